//! [`Schedule`]: the instants a periodic task runs at.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::every::Every;
use super::missed::MissedTicks;
use super::syntax::{parse_cron, parse_zone};
use super::wall_clock::CronRule;
use crate::api::error::Error;

/// When a periodic task runs: a cron expression read on the wall clock of a
/// time zone, or a fixed period; plus what to do about ticks missed while no
/// scheduler was running ([`MissedTicks`]).
///
/// ```
/// use scheduler::chrono::{DateTime, Utc};
/// use scheduler::chrono_tz::Europe::Paris;
/// use scheduler::{MissedTicks, Schedule};
///
/// // 09:00 on weekdays, Paris time.
/// let schedule = Schedule::cron("0 9 * * MON-FRI")?.tz(Paris);
/// let friday: DateTime<Utc> = "2026-07-03T12:00:00Z".parse().unwrap();
/// let monday_9am_paris: DateTime<Utc> = "2026-07-06T07:00:00Z".parse().unwrap();
/// assert_eq!(schedule.next_after(friday), Some(monday_9am_paris));
///
/// // Every 15 minutes, on :00, :15, :30 and :45 in every process.
/// let every = Schedule::every(std::time::Duration::from_secs(15 * 60))?
///     .missed(MissedTicks::RunOnce);
/// assert_eq!(every.expression(), "every 15m");
/// # Ok::<(), scheduler::Error>(())
/// ```
///
/// # Cron expressions
///
/// Five fields, `minute hour day-of-month month day-of-week`, or six with a
/// seconds field first; names such as `MON-FRI` and `JAN` in any case; lists,
/// ranges and steps (`0,30`, `9-17`, `*/15`); croner's extensions (`L` for the
/// last day of the month, `5#2` for the second Friday, `15W`, `@daily`). As in
/// vixie cron, a day matches when its day of month **or** its day of week does
/// (both restricted); `+` before the day of week asks for both. 0 and 7 are
/// Sunday. There is no year field. Ticks fall on whole seconds.
///
/// # Time zones and daylight saving time
///
/// A cron schedule reads its expression on the wall clock of its zone, UTC
/// unless [`tz`](Self::tz) or [`in_zone`](Self::in_zone) says otherwise. Where
/// the zone moves its clocks, two rules apply, decided by the hour field:
///
/// - **A schedule that names its hours** (any hour field but `*`), such as a
///   daily `30 2 * * *`, runs each matching wall-clock time **exactly once**:
///   - when the clock goes forward and the time does not exist that day, it
///     runs at the first instant after the jump: in Europe/Paris on
///     2026-03-29 (02:00 → 03:00), `30 2 * * *` runs at 03:00 CEST
///     (01:00 UTC). Several skipped times (`0,30 2 * * *`) make one run there;
///   - when the clock goes back and the time happens twice, it runs at the
///     first one: in Europe/Paris on 2026-10-25 (03:00 → 02:00),
///     `30 2 * * *` runs at 02:30 CEST (00:30 UTC) and not at 02:30 CET.
/// - **A schedule that runs every hour** (hour field `*`), such as
///   `0 * * * *` or `*/10 * * * *`, follows real time: a wall-clock hour
///   that does not exist has no ticks, and none are needed since no real time
///   passed (01:00 CET, then 03:00 CEST, one hour later); an hour that happens
///   twice has its ticks twice, since two real hours pass (02:00 CEST and
///   02:00 CET on 2026-10-25).
///
/// This is croner's own behaviour for a single time of day and for
/// every-hour expressions. croner treats other expressions that name their
/// hours, such as `0,30 2 * * *`, `*/15 2 * * *` or `0 */2 * * *`, as
/// interval jobs and would skip them entirely on the day the clock goes
/// forward and run them twice on the day it goes back; this type keeps the
/// rule above for them too.
///
/// An [`every`](Self::every) schedule counts real time from the Unix epoch,
/// ignores time zones and never sees daylight saving time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    rule: Rule,
    zone: Tz,
    missed: MissedTicks,
}

/// How the ticks are computed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// A cron expression, with whitespace normalised to single spaces
    /// (boxed: a parsed expression is large).
    Cron {
        expression: String,
        rule: Box<CronRule>,
    },
    /// A fixed period, and how it is shown.
    Every { every: Every, text: String },
}

impl Schedule {
    /// A schedule from a cron expression, read in UTC until [`tz`](Self::tz)
    /// or [`in_zone`](Self::in_zone) names another zone. See the type's docs
    /// for the syntax.
    ///
    /// An invalid expression, or one that matches no date (`0 0 30 2 *`), is
    /// [`Error::InvalidSchedule`], naming the field at fault:
    ///
    /// ```
    /// use scheduler::Schedule;
    ///
    /// let error = Schedule::cron("61 * * * *").unwrap_err();
    /// assert!(error.to_string().contains("minute field \"61\""), "{error}");
    /// ```
    pub fn cron(expression: &str) -> Result<Schedule, Error> {
        let cron = parse_cron(expression).map_err(|reason| invalid(expression, reason))?;
        Ok(Schedule {
            rule: Rule::Cron {
                expression: expression.split_whitespace().collect::<Vec<_>>().join(" "),
                rule: Box::new(CronRule::new(cron)),
            },
            zone: Tz::UTC,
            missed: MissedTicks::default(),
        })
    }

    /// A schedule that ticks every `period`, on the multiples of `period` since
    /// 1970-01-01T00:00:00Z: every process computes the same instants without
    /// coordination, and a 15-minute period ticks at :00, :15, :30 and :45.
    ///
    /// The period must be a whole number of milliseconds, at least one;
    /// anything else is [`Error::InvalidSchedule`].
    pub fn every(period: Duration) -> Result<Schedule, Error> {
        let every = Every::new(period).map_err(|reason| invalid(&format!("{period:?}"), reason))?;
        Ok(Schedule {
            rule: Rule::Every {
                text: every.describe(),
                every,
            },
            zone: Tz::UTC,
            missed: MissedTicks::default(),
        })
    }

    /// Reads the cron expression on the wall clock of `zone`. No effect on an
    /// [`every`](Self::every) schedule, which counts real time and stays in UTC.
    pub fn tz(mut self, zone: Tz) -> Schedule {
        if let Rule::Cron { .. } = self.rule {
            self.zone = zone;
        }
        self
    }

    /// [`tz`](Self::tz) by IANA name, such as `"Europe/Paris"`; an unknown name
    /// is [`Error::InvalidSchedule`]. Names are case-sensitive.
    ///
    /// ```
    /// use scheduler::Schedule;
    ///
    /// let schedule = Schedule::cron("0 9 * * *")?.in_zone("America/New_York")?;
    /// assert_eq!(schedule.zone().name(), "America/New_York");
    /// assert!(Schedule::cron("0 9 * * *")?.in_zone("Mars/Olympus").is_err());
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn in_zone(self, name: &str) -> Result<Schedule, Error> {
        let zone = parse_zone(name).map_err(|reason| invalid(name, reason))?;
        Ok(self.tz(zone))
    }

    /// What to do about ticks missed while no scheduler ran; [`MissedTicks::Skip`]
    /// unless set.
    pub fn missed(mut self, policy: MissedTicks) -> Schedule {
        self.missed = policy;
        self
    }

    /// The first tick strictly after `t`; `None` if there is none (beyond the
    /// year 5000 for a cron schedule, or the end of `DateTime`'s range).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Cron { rule, .. } => rule.next_after(self.zone, t),
            Rule::Every { every, .. } => every.next_after(t),
        }
    }

    /// The next `n` ticks strictly after `after`, in order (fewer if the
    /// schedule ends).
    ///
    /// ```
    /// use scheduler::chrono::{DateTime, Utc};
    /// use scheduler::Schedule;
    ///
    /// let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    /// let ticks = Schedule::cron("0 */6 * * *")?.upcoming(start, 3);
    /// let hours: Vec<String> = ticks.iter().map(|t| t.format("%H:%M").to_string()).collect();
    /// assert_eq!(hours, ["06:00", "12:00", "18:00"]);
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |tick| self.next_after(*tick))
            .take(n)
            .collect()
    }

    /// The last tick at or before `t`.
    pub(crate) fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.rule {
            Rule::Cron { rule, .. } => rule.at_or_before(self.zone, t),
            Rule::Every { every, .. } => every.at_or_before(t),
        }
    }

    /// The last tick strictly before `t`.
    pub(crate) fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks are whole milliseconds at the finest.
        self.at_or_before(t.checked_sub_signed(chrono::Duration::nanoseconds(1))?)
    }

    /// The cron expression (whitespace normalised to single spaces), or
    /// `every 15m` for a period.
    pub fn expression(&self) -> &str {
        match &self.rule {
            Rule::Cron { expression, .. } => expression,
            Rule::Every { text, .. } => text,
        }
    }

    /// The zone the expression is read in; UTC for an `every` schedule.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// What happens to missed ticks.
    pub fn missed_policy(&self) -> MissedTicks {
        self.missed
    }

    /// The period of an `every` schedule, in milliseconds.
    pub(crate) fn period_millis(&self) -> Option<i64> {
        match &self.rule {
            Rule::Every { every, .. } => Some(every.millis()),
            Rule::Cron { .. } => None,
        }
    }
}

/// `0 9 * * MON-FRI (Europe/Paris)`, or `every 15m`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Cron { expression, .. } => write!(f, "{expression} ({})", self.zone.name()),
            Rule::Every { text, .. } => f.write_str(text),
        }
    }
}

/// [`Error::InvalidSchedule`] for `input`.
pub(crate) fn invalid(input: &str, reason: String) -> Error {
    Error::InvalidSchedule {
        input: input.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Paris;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a valid RFC 3339 time")
    }

    fn reason(result: Result<Schedule, Error>) -> String {
        match result {
            Err(Error::InvalidSchedule { reason, .. }) => reason,
            other => panic!("expected InvalidSchedule, got {other:?}"),
        }
    }

    #[test]
    fn five_fields_or_six_with_seconds_first() {
        let start = at("2026-01-01T00:00:00Z");
        let five = Schedule::cron("30 9 * * *").expect("valid");
        assert_eq!(five.next_after(start), Some(at("2026-01-01T09:30:00Z")));
        let six = Schedule::cron("15 30 9 * * *").expect("valid");
        assert_eq!(six.next_after(start), Some(at("2026-01-01T09:30:15Z")));
        let seven = reason(Schedule::cron("0 30 9 * * * 2026"));
        assert!(seven.contains("found 7 fields"), "{seven}");
        let four = reason(Schedule::cron("30 9 * *"));
        assert!(four.contains("found 4 fields"), "{four}");
    }

    #[test]
    fn names_of_days_and_months_in_any_case() {
        // 2026-01-02 is a Friday.
        let start = at("2026-01-02T12:00:00Z");
        for expression in [
            "0 9 * * MON-FRI",
            "0 9 * * mon-fri",
            "0 9 * JAN,FEB MON-FRI",
        ] {
            let schedule = Schedule::cron(expression).expect(expression);
            assert_eq!(
                schedule.next_after(start),
                Some(at("2026-01-05T09:00:00Z")),
                "{expression}"
            );
        }
    }

    #[test]
    fn errors_name_the_field_and_give_croners_reason() {
        let minute = reason(Schedule::cron("61 * * * *"));
        assert_eq!(
            minute,
            "the minute field \"61\" is invalid: Number out of bounds (minute takes 0-59)"
        );
        let day = reason(Schedule::cron("0 9 * * MON-FRU"));
        assert!(
            day.starts_with("the day-of-week field \"MON-FRU\" is invalid: "),
            "{day}"
        );
        let second = reason(Schedule::cron("*/0 0 9 * * *"));
        assert!(second.starts_with("the second field \"*/0\""), "{second}");
        assert!(reason(Schedule::cron("   ")).starts_with("it is empty"));
        let never = reason(Schedule::cron("0 0 30 2 *"));
        assert!(never.starts_with("it never matches"), "{never}");
        let error = Schedule::cron("61 * * * *").expect_err("invalid");
        assert!(
            error
                .to_string()
                .starts_with("invalid schedule \"61 * * * *\": the minute field"),
            "{error}"
        );
    }

    #[test]
    fn zones_by_name_with_a_hint_for_the_wrong_case() {
        let schedule = Schedule::cron("0 9 * * *")
            .and_then(|s| s.in_zone("Europe/Paris"))
            .expect("valid");
        assert_eq!(schedule.zone(), Paris);
        let wrong_case =
            reason(Schedule::cron("0 9 * * *").and_then(|s| s.in_zone("europe/paris")));
        assert!(
            wrong_case.contains("did you mean \"Europe/Paris\""),
            "{wrong_case}"
        );
        let error = Schedule::cron("0 9 * * *")
            .and_then(|s| s.in_zone("Europe/Pariss"))
            .expect_err("unknown zone");
        assert!(error.to_string().contains("\"Europe/Pariss\""), "{error}");
    }

    #[test]
    fn the_zone_moves_the_ticks_of_a_cron_schedule_only() {
        let start = at("2026-07-01T00:00:00Z");
        let paris = Schedule::cron("0 9 * * *").expect("valid").tz(Paris);
        // 09:00 CEST is 07:00 UTC.
        assert_eq!(paris.next_after(start), Some(at("2026-07-01T07:00:00Z")));
        let every = Schedule::every(Duration::from_secs(3600)).expect("valid");
        let moved = every.clone().tz(Paris);
        assert_eq!(moved, every);
        assert_eq!(moved.zone(), Tz::UTC);
        assert_eq!(moved.next_after(start), Some(at("2026-07-01T01:00:00Z")));
    }

    #[test]
    fn next_after_is_strictly_after() {
        let schedule = Schedule::cron("0 9 * * *").expect("valid");
        assert_eq!(
            schedule.next_after(at("2026-01-01T09:00:00Z")),
            Some(at("2026-01-02T09:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T08:59:59.999Z")),
            Some(at("2026-01-01T09:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T09:00:00.001Z")),
            Some(at("2026-01-02T09:00:00Z"))
        );
    }

    #[test]
    fn upcoming_lists_the_next_ticks_in_order() {
        let schedule = Schedule::cron("0 9 1 * *").expect("valid");
        assert_eq!(
            schedule.upcoming(at("2026-01-15T00:00:00Z"), 3),
            vec![
                at("2026-02-01T09:00:00Z"),
                at("2026-03-01T09:00:00Z"),
                at("2026-04-01T09:00:00Z"),
            ]
        );
        assert!(schedule.upcoming(at("2026-01-15T00:00:00Z"), 0).is_empty());
    }

    #[test]
    fn before_and_at_or_before_mirror_next_after() {
        let schedule = Schedule::cron("0 9 * * *").expect("valid");
        let nine = at("2026-01-02T09:00:00Z");
        assert_eq!(schedule.at_or_before(nine), Some(nine));
        assert_eq!(schedule.before(nine), Some(at("2026-01-01T09:00:00Z")));
        assert_eq!(
            schedule.at_or_before(at("2026-01-02T09:00:00.5Z")),
            Some(nine)
        );
    }

    #[test]
    fn display_and_accessors() {
        let schedule = Schedule::cron(" 0  9 * *   MON-FRI ")
            .expect("valid")
            .tz(Paris)
            .missed(MissedTicks::RunOnce);
        assert_eq!(schedule.expression(), "0 9 * * MON-FRI");
        assert_eq!(schedule.to_string(), "0 9 * * MON-FRI (Europe/Paris)");
        assert_eq!(schedule.missed_policy(), MissedTicks::RunOnce);
        let every = Schedule::every(Duration::from_millis(1500)).expect("valid");
        assert_eq!(every.to_string(), "every 1500ms");
        assert_eq!(every.period_millis(), Some(1500));
        assert_eq!(
            Schedule::every(Duration::ZERO)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(
                "invalid schedule \"0ns\": the period is zero; give at least one millisecond"
                    .to_string()
            )
        );
    }
}
