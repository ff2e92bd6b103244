//! The text forms of a periodic schedule: cron expressions, time zone names and
//! missed-tick policies, each read with the reason it is refused.
//!
//! This file exists twice, byte for byte: `scheduler/src/periodic/syntax.rs`
//! (for `Schedule`) and `scheduler-macros/src/syntax.rs` (for
//! `#[task(cron = ...)]`), so the attribute is checked at compile time exactly
//! as the runtime checks it. A unit test in `scheduler` fails when they differ.

use std::str::FromStr;

use chrono::NaiveDate;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The accepted shapes, for messages.
pub(crate) const CRON_FORMS: &str =
    "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first";

/// What each field takes, in the order of a 6-field expression.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, 0 and 7 both Sunday"),
];

/// Parses a cron expression: 5 fields, or 6 with seconds first (no year
/// field); names such as `MON-FRI` and `JAN` in any case; croner's extensions
/// (`L`, `W`, `#`, `+`, `@daily`, ...). Day of month and day of week combine
/// with OR, as in vixie cron. The error says which field is wrong and why, in
/// croner's words.
pub(crate) fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.is_empty() {
        return Err(format!("it is empty; write {CRON_FORMS}"));
    }
    let nickname = fields.len() == 1 && fields[0].starts_with('@');
    if !nickname && !(5..=6).contains(&fields.len()) {
        return Err(format!(
            "expected {CRON_FORMS}, found {} field{}",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    let cron = parser()
        .parse(expression)
        .map_err(|error| explain(&fields, error))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .ok_or_else(|| "the Unix epoch is not a date".to_string())?;
    if cron.find_next_occurrence(&epoch, false).is_err() {
        return Err(
            "it never matches: no date has this day of month in these months (and day of week, with `+`)"
                .to_string(),
        );
    }
    Ok(cron)
}

/// The one parser configuration both crates use.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Names the field at fault: each field is parsed alone, the others `*`.
fn explain(fields: &[&str], error: CronError) -> String {
    let offset = 6 - fields.len().min(6);
    for (index, field) in fields.iter().enumerate() {
        let mut alone = vec!["*"; fields.len()];
        alone[index] = field;
        if let Err(own) = parser().parse(&alone.join(" ")) {
            if let Some((name, takes)) = FIELDS.get(index + offset) {
                return format!(
                    "the {name} field {field:?} is invalid: {} ({name} takes {takes})",
                    croner_reason(&own)
                );
            }
        }
    }
    croner_reason(&error)
}

/// croner's own words, without its generic prefix and final full stop.
fn croner_reason(error: &CronError) -> String {
    let text = match error {
        CronError::InvalidPattern(message)
        | CronError::IllegalCharacters(message)
        | CronError::ComponentError(message) => message.clone(),
        other => other.to_string(),
    };
    text.trim_end_matches('.').to_string()
}

/// Parses an IANA time zone name such as `Europe/Paris` or `UTC`. Names are
/// case-sensitive; a name that differs only in case is suggested.
pub(crate) fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    if let Ok(zone) = chrono_tz::Tz::from_str(name) {
        return Ok(zone);
    }
    let close = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|zone| zone.name().eq_ignore_ascii_case(name.trim()));
    Err(match close {
        Some(zone) => format!(
            "no such IANA time zone (names are case-sensitive); did you mean {:?}?",
            zone.name()
        ),
        None => "no such IANA time zone; write one such as \"Europe/Paris\", \"America/New_York\" or \"UTC\"".to_string(),
    })
}

/// A missed-tick policy as text: `skip`, `run_once` or `run_all(N)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MissedForm {
    /// `skip`.
    Skip,
    /// `run_once`.
    RunOnce,
    /// `run_all(N)`.
    RunAll(u32),
}

/// The accepted forms of a missed-tick policy, for messages.
pub(crate) const MISSED_FORMS: &str = "\"skip\", \"run_once\" or \"run_all(N)\"";

/// Parses `skip`, `run_once` or `run_all(N)` (`N` from 0 to 4294967295).
pub(crate) fn parse_missed(text: &str) -> Result<MissedForm, String> {
    match text {
        "skip" => return Ok(MissedForm::Skip),
        "run_once" => return Ok(MissedForm::RunOnce),
        _ => {}
    }
    let max = text
        .strip_prefix("run_all(")
        .and_then(|rest| rest.strip_suffix(')'))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok());
    match max {
        Some(max) => Ok(MissedForm::RunAll(max)),
        None => Err(format!(
            "unknown missed-tick policy {text:?}; write {MISSED_FORMS}"
        )),
    }
}

/// The text form of a policy, read back by [`parse_missed`].
pub(crate) fn missed_text(form: MissedForm) -> String {
    match form {
        MissedForm::Skip => "skip".to_string(),
        MissedForm::RunOnce => "run_once".to_string(),
        MissedForm::RunAll(max) => format!("run_all({max})"),
    }
}
