//! Arguments by position: `#[task]` stores a job's arguments as a JSON array in
//! the order of the function's parameters (`["noop", 0.0]`), as Sidekiq and
//! Faktory do, so no record carries the parameters' names.

use serde::de::DeserializeOwned;

use crate::error::Error;

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

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[&str] = &["k", "s", "p"];

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
