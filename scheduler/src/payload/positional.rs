//! Arguments by position: `#[task]` stores a job's arguments as a JSON array in
//! the order of the function's parameters (`["noop", 0.0]`), as Sidekiq and
//! Faktory do, so no record carries the parameters' names. The untyped API
//! speaks JSON objects by name; these functions convert between the two with
//! the names from the task's registration.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::error::Error;

/// The arguments of an untyped enqueue, as stored for a task whose payload is
/// positional with these parameters: an object by name becomes the array; an
/// array must have one element per parameter. Anything else is refused, naming
/// the task and the keys at fault.
pub(crate) fn to_positional(task: &str, params: &[&str], args: &Value) -> Result<Value, Error> {
    let mismatch = |problem: String| Error::Arguments {
        task: task.to_string(),
        params: describe(params),
        problem,
    };
    match args {
        Value::Object(object) => {
            let unknown: Vec<String> = object
                .keys()
                .filter(|key| !params.contains(&key.as_str()))
                .map(|key| format!("unknown argument `{key}`"))
                .collect();
            let missing = params
                .iter()
                .filter(|name| !object.contains_key(**name))
                .map(|name| format!("missing argument `{name}`"));
            let problems: Vec<String> = unknown.into_iter().chain(missing).collect();
            if !problems.is_empty() {
                return Err(mismatch(problems.join("; ")));
            }
            Ok(Value::Array(
                params
                    .iter()
                    .map(|name| object.get(*name).cloned().unwrap_or(Value::Null))
                    .collect(),
            ))
        }
        Value::Array(array) if array.len() == params.len() => Ok(args.clone()),
        Value::Array(array) => Err(mismatch(format!(
            "{} given by position, {} expected",
            count(array.len()),
            params.len()
        ))),
        other => Err(mismatch(format!(
            "expected a JSON object (by name) or array (by position), not {}",
            kind(other)
        ))),
    }
}

/// A stored payload as users see it: an array with one element per parameter
/// becomes an object by name; anything else (an object written by an earlier
/// version, an array of another length) is returned as it is.
pub(crate) fn to_named(params: &[&str], stored: Value) -> Value {
    match stored {
        Value::Array(array) if array.len() == params.len() => Value::Object(
            params
                .iter()
                .map(|name| name.to_string())
                .zip(array)
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Decodes a stored payload into a task's arguments. With `params` (a
/// positional task), an array of the wrong length is reported as such, naming
/// the parameters, rather than with serde's words.
pub(crate) fn decode<A: DeserializeOwned>(
    task: &str,
    params: Option<&[&str]>,
    payload: &[u8],
) -> Result<A, Error> {
    serde_json::from_slice(payload).map_err(|source| {
        let problem = params.and_then(|params| arity_problem(params, payload));
        Error::Payload {
            task: task.to_string(),
            source: match problem {
                Some(problem) => serde::de::Error::custom(problem),
                None => source,
            },
        }
    })
}

/// Why a payload that failed to decode did, when the cause is its length: an
/// array with the wrong number of arguments. `None` for every other payload.
pub(crate) fn arity_problem(params: &[&str], payload: &[u8]) -> Option<String> {
    let found = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(payload)
        .ok()?
        .len();
    (found != params.len()).then(|| {
        format!(
            "{} stored by position, the task takes {} ({})",
            count(found),
            params.len(),
            describe(params)
        )
    })
}

/// `k, s, p`, or `no arguments`.
fn describe(params: &[&str]) -> String {
    if params.is_empty() {
        "no arguments".to_string()
    } else {
        params.join(", ")
    }
}

/// `1 argument`, `3 arguments`.
fn count(n: usize) -> String {
    if n == 1 {
        "1 argument".to_string()
    } else {
        format!("{n} arguments")
    }
}

/// What kind of JSON value this is, for a message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PARAMS: &[&str] = &["k", "s", "p"];

    #[test]
    fn objects_become_arrays_in_parameter_order() {
        let stored = to_positional(
            "bench_job",
            PARAMS,
            &json!({"p": "x", "k": "noop", "s": 0.0}),
        );
        assert_eq!(stored.ok(), Some(json!(["noop", 0.0, "x"])));
        // An explicit null is an argument given.
        let stored = to_positional("t", &["a"], &json!({"a": null}));
        assert_eq!(stored.ok(), Some(json!([null])));
        assert_eq!(to_positional("t", &[], &json!({})).ok(), Some(json!([])));
    }

    #[test]
    fn arrays_pass_through_when_their_length_fits() {
        let args = json!(["noop", 0.0, "x"]);
        assert_eq!(to_positional("t", PARAMS, &args).ok(), Some(args));
        let err = to_positional("bench_job", PARAMS, &json!(["noop"]))
            .expect_err("too short")
            .to_string();
        assert_eq!(
            err,
            "arguments of task `bench_job` do not match its parameters (k, s, p): \
             1 argument given by position, 3 expected"
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let err = to_positional("bench_job", PARAMS, &json!({"k": "noop", "x": 1, "p": ""}))
            .expect_err("mismatch");
        assert!(matches!(err, Error::Arguments { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "arguments of task `bench_job` do not match its parameters (k, s, p): \
             unknown argument `x`; missing argument `s`"
        );
        let err = to_positional("quick", &[], &json!("hello"))
            .expect_err("a string")
            .to_string();
        assert_eq!(
            err,
            "arguments of task `quick` do not match its parameters (no arguments): \
             expected a JSON object (by name) or array (by position), not a string"
        );
    }

    #[test]
    fn stored_arrays_of_the_right_length_are_shown_by_name() {
        assert_eq!(
            to_named(PARAMS, json!(["noop", 0.0, "x"])),
            json!({"k": "noop", "s": 0.0, "p": "x"})
        );
        assert_eq!(to_named(&[], json!([])), json!({}));
        // Written by an earlier version, or not by this binary's task: as stored.
        let old = json!({"k": "noop", "s": 0.0, "p": "x"});
        assert_eq!(to_named(PARAMS, old.clone()), old);
        assert_eq!(to_named(PARAMS, json!([1, 2])), json!([1, 2]));
    }

    #[test]
    fn only_a_wrong_length_is_an_arity_problem() {
        assert_eq!(
            arity_problem(PARAMS, b"[1,2,3,4]").as_deref(),
            Some("4 arguments stored by position, the task takes 3 (k, s, p)")
        );
        assert_eq!(
            arity_problem(&["a"], b"[]").as_deref(),
            Some("0 arguments stored by position, the task takes 1 (a)")
        );
        assert_eq!(arity_problem(PARAMS, b"[1,2,3]"), None);
        assert_eq!(arity_problem(PARAMS, br#"{"k":1}"#), None);
        assert_eq!(arity_problem(PARAMS, b"[1,2"), None);
    }
}
