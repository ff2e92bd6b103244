//! The options of `#[task(...)]`, parsed with `syn::meta::parser`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{LitInt, LitStr};

use crate::syntax::{missed_text, parse_cron, parse_missed, parse_zone, MissedForm, MISSED_FORMS};

/// The options a task accepts, for the "unknown option" message.
const VALID: &str = "`name = \"...\"`, `max_attempts = N`, `timeout = \"30s\"`, `queue = \"emails\"`, `concurrency = N`, `key_concurrency = N`, `rate = \"100/1m\"`, `key_rate = \"10/1s\"`, `cron = \"0 9 * * MON-FRI\"`, `tz = \"Europe/Paris\"`, `missed = \"run_once\"`, `crate = path`";

/// The accepted forms of `timeout`.
const TIMEOUT_FORMS: &str =
    "a whole number followed by `ms`, `s`, `m` or `h`, such as \"500ms\", \"30s\", \"5m\" or \"1h\"";

/// The options of one task, each with the span of its key.
#[derive(Default)]
pub(crate) struct TaskArgs {
    /// `name = "..."`: the wire name.
    pub(crate) name: Option<(Span, String)>,
    /// `max_attempts = N`.
    pub(crate) max_attempts: Option<(Span, u32)>,
    /// `timeout = "30s"`, in milliseconds.
    pub(crate) timeout: Option<(Span, u64)>,
    /// `crate = path`: where the runtime crate is.
    pub(crate) krate: Option<(Span, syn::Path)>,
    /// `queue = "..."`: the queue its jobs go to.
    pub(crate) queue: Option<(Span, String)>,
    /// `concurrency = N`: at most N running at once, across processes.
    pub(crate) concurrency: Option<(Span, u32)>,
    /// `key_concurrency = N`: at most N running at once per limit key.
    pub(crate) key_concurrency: Option<(Span, u32)>,
    /// `rate = "N/window"`: (starts, window ms).
    pub(crate) rate: Option<(Span, (u32, u64))>,
    /// `key_rate = "N/window"`: the same per limit key.
    pub(crate) key_rate: Option<(Span, (u32, u64))>,
    /// `cron = "..."`: the schedule of a periodic task, as written.
    pub(crate) cron: Option<(Span, String)>,
    /// `tz = "..."`: the IANA zone of `cron`.
    pub(crate) tz: Option<(Span, String)>,
    /// `missed = "..."`: the missed-tick policy of `cron`, normalised.
    pub(crate) missed: Option<(Span, String)>,
    /// Whether `cron` was written, valid or not (so a bad expression does not
    /// also report its `tz` as lacking a `cron`).
    cron_given: bool,
}

impl TaskArgs {
    /// Parses the attribute's arguments. Every problem is reported; the options
    /// that parsed are kept (the fallback still needs `crate`).
    pub(crate) fn parse(tokens: TokenStream) -> (TaskArgs, Option<syn::Error>) {
        let mut args = TaskArgs::default();
        let mut errors = Errors::default();
        let parser = syn::meta::parser(|meta| args.option(meta, &mut errors));
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        if !args.cron_given {
            for (option, slot) in [("tz", &args.tz), ("missed", &args.missed)] {
                if let Some((span, _)) = slot {
                    errors.push(syn::Error::new(
                        *span,
                        format!("`{option}` belongs to a periodic task: add `cron = \"...\"` (such as `cron = \"0 9 * * MON-FRI\"`), or remove `{option}`"),
                    ));
                }
            }
        }
        (args, errors.0)
    }

    /// One `key = value`. Problems with a value are collected and parsing goes on;
    /// a syntax error stops it.
    fn option(&mut self, meta: ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let key = meta.path.span();
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            match validate_name(&lit.value()) {
                Ok(()) => errors.check(set_once(&mut self.name, "name", key, lit.value())),
                Err(message) => errors.push(syn::Error::new(lit.span(), message)),
            }
        } else if meta.path.is_ident("max_attempts") {
            let value = meta.value()?;
            let lit: LitInt = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a whole number of attempts, such as `max_attempts = 3`",
                )
            })?;
            match lit.base10_parse::<u32>() {
                Ok(0) => errors.push(syn::Error::new(
                    lit.span(),
                    "`max_attempts` must be at least 1: write `max_attempts = 1` for a task that is never retried",
                )),
                Ok(n) => errors.check(set_once(&mut self.max_attempts, "max_attempts", key, n)),
                Err(_) => errors.push(syn::Error::new(
                    lit.span(),
                    "`max_attempts` must be a whole number from 1 to 4294967295, such as `max_attempts = 3`",
                )),
            }
        } else if meta.path.is_ident("queue") {
            let lit = quoted(&meta, "a quoted queue name, such as `queue = \"emails\"`")?;
            match queue_name_problem(&lit.value()) {
                None => errors.check(set_once(&mut self.queue, "queue", key, lit.value())),
                Some(reason) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("invalid queue name {:?}: {reason}", lit.value()),
                )),
            }
        } else if meta.path.is_ident("concurrency") || meta.path.is_ident("key_concurrency") {
            let per_key = meta.path.is_ident("key_concurrency");
            let option = if per_key {
                "key_concurrency"
            } else {
                "concurrency"
            };
            let value = meta.value()?;
            let lit: LitInt = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected a whole number of jobs at once, such as `{option} = 2`"),
                )
            })?;
            let slot = if per_key {
                &mut self.key_concurrency
            } else {
                &mut self.concurrency
            };
            match lit.base10_parse::<u32>() {
                Ok(0) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("`{option}` must be at least 1: a limit of 0 would never run a job; remove the option for no limit"),
                )),
                Ok(n) => errors.check(set_once(slot, option, key, n)),
                Err(_) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("`{option}` must be a whole number from 1 to 4294967295, such as `{option} = 2`"),
                )),
            }
        } else if meta.path.is_ident("rate") || meta.path.is_ident("key_rate") {
            let per_key = meta.path.is_ident("key_rate");
            let option = if per_key { "key_rate" } else { "rate" };
            let lit = quoted(
                &meta,
                &format!("a quoted rate, such as `{option} = \"100/1m\"`"),
            )?;
            let slot = if per_key {
                &mut self.key_rate
            } else {
                &mut self.rate
            };
            match parse_rate(&lit.value()) {
                Ok(rate) => errors.check(set_once(slot, option, key, rate)),
                Err(reason) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("invalid `{option}` {:?}: {reason}", lit.value()),
                )),
            }
        } else if meta.path.is_ident("timeout") {
            let value = meta.value()?;
            let lit: LitStr = value.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected a quoted duration: {TIMEOUT_FORMS}"),
                )
            })?;
            match parse_duration_ms(&lit.value()) {
                Some(ms) => errors.check(set_once(&mut self.timeout, "timeout", key, ms)),
                None => errors.push(syn::Error::new(
                    lit.span(),
                    format!("invalid timeout {:?}: write {TIMEOUT_FORMS}", lit.value()),
                )),
            }
        } else if meta.path.is_ident("cron") {
            self.cron_given = true;
            let lit = quoted(
                &meta,
                "a quoted cron expression, such as `cron = \"0 9 * * MON-FRI\"`",
            )?;
            match parse_cron(&lit.value()) {
                Ok(_) => errors.check(set_once(&mut self.cron, "cron", key, lit.value())),
                Err(reason) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("invalid cron expression {:?}: {reason}", lit.value()),
                )),
            }
        } else if meta.path.is_ident("tz") {
            let lit = quoted(
                &meta,
                "a quoted IANA time zone name, such as `tz = \"Europe/Paris\"`",
            )?;
            match parse_zone(&lit.value()) {
                Ok(_) => errors.check(set_once(&mut self.tz, "tz", key, lit.value())),
                Err(reason) => errors.push(syn::Error::new(
                    lit.span(),
                    format!("invalid `tz` {:?}: {reason}", lit.value()),
                )),
            }
        } else if meta.path.is_ident("missed") {
            let lit = quoted(
                &meta,
                &format!("a quoted missed-tick policy: {MISSED_FORMS}"),
            )?;
            match parse_missed(&lit.value()) {
                Ok(MissedForm::RunAll(0)) => errors.push(syn::Error::new(
                    lit.span(),
                    "`run_all(0)` runs no missed tick: write \"skip\", or `run_all(N)` with N at least 1",
                )),
                Ok(form) => errors.check(set_once(&mut self.missed, "missed", key, missed_text(form))),
                Err(reason) => errors.push(syn::Error::new(lit.span(), reason)),
            }
        } else if meta.path.is_ident("crate") {
            let path: syn::Path = meta.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected the path of the `scheduler` crate without quotes, such as `crate = my_sched`",
                )
            })?;
            errors.check(set_once(&mut self.krate, "crate", key, path));
        } else {
            let path = &meta.path;
            let name = quote::quote!(#path).to_string().replace(' ', "");
            errors.push(syn::Error::new(
                key,
                format!("unknown option `{name}`; the options are {VALID}"),
            ));
            skip_value(&meta)?;
        }
        Ok(())
    }
}

/// The string literal after `key =`, or an error saying what to write.
fn quoted(meta: &ParseNestedMeta<'_>, expected: &str) -> syn::Result<LitStr> {
    meta.value()?
        .parse()
        .map_err(|e: syn::Error| syn::Error::new(e.span(), format!("expected {expected}")))
}

/// Stores an option, or says it was given twice (on the second one).
fn set_once<T>(slot: &mut Option<(Span, T)>, name: &str, span: Span, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("`{name}` given twice; keep only one `{name} = ...`"),
        ));
    }
    *slot = Some((span, value));
    Ok(())
}

/// Consumes the value of an unknown option, so the following ones are still read.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<proc_macro2::Group>()?;
    }
    Ok(())
}

/// Accumulates errors with `syn::Error::combine`.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn check(&mut self, result: syn::Result<()>) {
        if let Err(error) = result {
            self.push(error);
        }
    }
}

/// `"<count>/<window>"` as (count, window ms), or why not (the runtime's
/// `Rate::parse` reads the same form).
pub(crate) fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let (count, window) = text
        .split_once('/')
        .ok_or("write `<count>/<window>`, such as \"100/1m\" (100 starts a minute)")?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| "the count before `/` is not a whole number")?;
    if count == 0 {
        return Err(
            "a rate of 0 starts would never run a job; remove the option for no limit".into(),
        );
    }
    let ms = parse_duration_ms(window.trim()).ok_or(format!(
        "the window after `/` must be {TIMEOUT_FORMS}, and longer than zero"
    ))?;
    Ok((count, ms))
}

/// Why a queue name is refused (the runtime's `queue_name_problem`, which
/// this crate cannot call: the same rule; both crates' tests check the cases
/// of `tests/fixtures/routing-rules.txt`).
pub(crate) fn queue_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a queue name cannot be empty")
    } else if name.len() > 64 {
        Some("a queue name is at most 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        Some("a queue name holds only ASCII letters, digits, `_`, `-`, `.` and `:`")
    } else {
        None
    }
}

/// A task's wire name: the same rules as a job id, minus whitespace.
fn validate_name(name: &str) -> Result<(), String> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 256 {
        "it is longer than 256 bytes"
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains whitespace or a control character"
    } else if name.contains(['{', '}']) {
        "it contains `{` or `}`, which Redis Cluster reads as a hash tag"
    } else {
        return Ok(());
    };
    Err(format!(
        "invalid task name {name:?}: {reason}; write a name such as `name = \"send_notification\"`, or remove the option to use the function's name"
    ))
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h"` in milliseconds; `None` for anything else
/// (including zero and overflow).
pub(crate) fn parse_duration_ms(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        for bad in [
            "abc",
            "",
            "s",
            "0s",
            "1.5s",
            "-1s",
            "30 s",
            "30sec",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn all_options() {
        let (args, err) = TaskArgs::parse(quote!(
            name = "n",
            max_attempts = 3,
            timeout = "2s",
            crate = my::sched
        ));
        assert!(err.is_none());
        assert_eq!(args.name.map(|n| n.1), Some("n".to_string()));
        assert_eq!(args.max_attempts.map(|n| n.1), Some(3));
        assert_eq!(args.timeout.map(|n| n.1), Some(2_000));
        assert!(args.krate.is_some());
    }

    #[test]
    fn every_problem_is_reported() {
        let (args, err) = TaskArgs::parse(quote!(
            queues = "q",
            timeout = "abc",
            name = "",
            crate = foo
        ));
        let messages: Vec<String> = err.into_iter().flatten().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("unknown option `queues`"));
        assert!(messages[1].starts_with("invalid timeout"));
        assert!(messages[2].starts_with("invalid task name"));
        assert!(
            args.krate.is_some(),
            "crate is still known for the fallback"
        );
    }

    /// The cases both crates check (tests/fixtures/routing-rules.txt).
    fn shared_cases(kind: &str) -> Vec<(bool, String)> {
        include_str!("../../tests/fixtures/routing-rules.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let mut parts = line.splitn(3, '\t');
                let (k, verdict, text) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
                (k == kind).then(|| (verdict == "ok", text.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_shared_rules_hold_here_as_at_run_time() {
        let queues = shared_cases("queue");
        let rates = shared_cases("rate");
        assert!(queues.len() >= 8 && rates.len() >= 8);
        for (ok, name) in queues {
            assert_eq!(queue_name_problem(&name).is_none(), ok, "queue {name:?}");
        }
        for (ok, text) in rates {
            assert_eq!(parse_rate(&text).is_ok(), ok, "rate {text:?}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/1m"), Ok((100, 60_000)));
        assert_eq!(parse_rate("5/500ms"), Ok((5, 500)));
        for bad in ["100", "100/0s", "0/1s", "x/1s", "100/1d", "100/"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let (args, err) = TaskArgs::parse(quote!(rate = "100/1m", key_rate = "1/1s"));
        assert!(err.is_none());
        assert_eq!(args.rate.map(|r| r.1), Some((100, 60_000)));
        assert_eq!(args.key_rate.map(|r| r.1), Some((1, 1_000)));
    }

    #[test]
    fn queue_and_limits() {
        let (args, err) = TaskArgs::parse(quote!(
            queue = "emails",
            concurrency = 2,
            key_concurrency = 1
        ));
        assert!(err.is_none());
        assert_eq!(args.queue.map(|q| q.1), Some("emails".to_string()));
        assert_eq!(args.concurrency.map(|n| n.1), Some(2));
        assert_eq!(args.key_concurrency.map(|n| n.1), Some(1));
        let (_, err) = TaskArgs::parse(quote!(queue = "", concurrency = 0, key_concurrency = 0));
        let messages = messages(err);
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("cannot be empty"), "{messages:?}");
        assert!(
            messages[1].starts_with("`concurrency` must be at least 1"),
            "{messages:?}"
        );
        assert!(
            messages[2].starts_with("`key_concurrency` must be at least 1"),
            "{messages:?}"
        );
    }

    fn messages(err: Option<syn::Error>) -> Vec<String> {
        err.into_iter().flatten().map(|e| e.to_string()).collect()
    }

    #[test]
    fn periodic_options() {
        let (args, err) = TaskArgs::parse(quote!(
            cron = "0 9 * * MON-FRI",
            tz = "Europe/Paris",
            missed = "run_all(5)"
        ));
        assert!(err.is_none(), "{:?}", messages(err));
        assert_eq!(args.cron.map(|c| c.1), Some("0 9 * * MON-FRI".to_string()));
        assert_eq!(args.tz.map(|c| c.1), Some("Europe/Paris".to_string()));
        assert_eq!(args.missed.map(|c| c.1), Some("run_all(5)".to_string()));
    }

    #[test]
    fn periodic_mistakes() {
        let one = |tokens| messages(TaskArgs::parse(tokens).1);
        let cron = one(quote!(cron = "61 * * * *"));
        assert_eq!(cron.len(), 1);
        assert!(
            cron[0].starts_with("invalid cron expression \"61 * * * *\": the minute field"),
            "{cron:?}"
        );
        let zone = one(quote!(cron = "0 9 * * *", tz = "Europe/Pariss"));
        assert!(
            zone[0].starts_with("invalid `tz` \"Europe/Pariss\""),
            "{zone:?}"
        );
        let tz_alone = one(quote!(tz = "Europe/Paris"));
        assert!(
            tz_alone[0].starts_with("`tz` belongs to a periodic task"),
            "{tz_alone:?}"
        );
        let missed_alone = one(quote!(missed = "skip"));
        assert!(missed_alone[0].starts_with("`missed` belongs to a periodic task"));
        // A bad expression is one mistake, not also a `tz` without `cron`.
        assert_eq!(one(quote!(cron = "nope", tz = "UTC")).len(), 1);
        assert!(one(quote!(cron = "0 9 * * *", missed = "run_all(0)"))[0]
            .contains("runs no missed tick"));
        assert!(one(quote!(cron = "0 9 * * *", missed = "often"))[0]
            .starts_with("unknown missed-tick policy"));
        assert!(one(quote!(cron = 5))[0].starts_with("expected a quoted cron expression"));
    }
}
