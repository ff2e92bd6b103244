//! The text forms of a schedule: the one stored in Redis, so any process can
//! rebuild a schedule and compare two definitions, and the one `#[task(cron =
//! ...)]` puts in a task's registration.

use std::time::Duration;

use super::missed::MissedTicks;
use super::schedule::{invalid, Schedule};
use super::syntax::parse_missed;
use crate::api::error::Error;

impl Schedule {
    /// The stored form, four parts joined by `|`: the kind, the expression, the
    /// zone and the missed-tick policy:
    /// `cron|0 9 * * MON-FRI|Europe/Paris|skip`, `every|900000|UTC|run_all(5)`
    /// (the period in milliseconds). No part can contain `|`. Two schedules
    /// with the same form tick alike; the form compares text, so `mon-fri` and
    /// `MON-FRI` differ.
    #[allow(dead_code, reason = "called by the planner (issue 15, part B)")]
    pub(crate) fn spec(&self) -> String {
        let missed = self.missed_policy().text();
        let zone = self.zone().name();
        match self.period_millis() {
            Some(ms) => format!("every|{ms}|{zone}|{missed}"),
            None => format!("cron|{}|{zone}|{missed}", self.expression()),
        }
    }

    /// Reads [`spec`](Self::spec)'s form back; anything else is
    /// [`Error::InvalidSchedule`].
    #[allow(dead_code, reason = "called by the planner (issue 15, part B)")]
    pub(crate) fn from_spec(spec: &str) -> Result<Schedule, Error> {
        let parts: Vec<&str> = spec.split('|').collect();
        let [kind, body, zone, missed] = parts[..] else {
            return Err(invalid(
                spec,
                "a stored schedule has four parts: kind|expression|zone|missed".to_string(),
            ));
        };
        let schedule = match kind {
            "cron" => Schedule::cron(body)?.in_zone(zone)?,
            "every" => {
                let ms: u64 = body.parse().map_err(|_| {
                    invalid(
                        spec,
                        format!("the period {body:?} is not a number of milliseconds"),
                    )
                })?;
                if zone != "UTC" {
                    return Err(invalid(spec, "an `every` schedule is in UTC".to_string()));
                }
                Schedule::every(Duration::from_millis(ms))?
            }
            other => {
                return Err(invalid(
                    spec,
                    format!("unknown kind {other:?}; expected \"cron\" or \"every\""),
                ))
            }
        };
        let missed = parse_missed(missed).map_err(|reason| invalid(spec, reason))?;
        Ok(schedule.missed(missed.into()))
    }
}

/// The schedule of a periodic task as `#[task(cron = "...")]` writes it into
/// the task's [`TaskRegistration`](crate::TaskRegistration): checked at
/// compile time, built with [`schedule`](Self::schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The cron expression, as [`Schedule::cron`] takes it.
    pub expression: &'static str,
    /// The IANA zone name, as [`Schedule::in_zone`] takes it; `"UTC"` by default.
    pub zone: &'static str,
    /// The missed-tick policy: `"skip"`, `"run_once"` or `"run_all(N)"`.
    pub missed: &'static str,
}

impl ScheduleSpec {
    /// The schedule. `#[task]` checked every part at compile time, so this
    /// fails only for a hand-written registration with a mistake in it.
    ///
    /// ```
    /// use scheduler::{MissedTicks, ScheduleSpec};
    ///
    /// let spec = ScheduleSpec { expression: "0 9 * * MON-FRI", zone: "Europe/Paris", missed: "run_all(3)" };
    /// let schedule = spec.schedule()?;
    /// assert_eq!(schedule.missed_policy(), MissedTicks::RunAll { max: 3 });
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn schedule(&self) -> Result<Schedule, Error> {
        let missed = parse_missed(self.missed).map_err(|reason| invalid(self.missed, reason))?;
        Ok(Schedule::cron(self.expression)?
            .in_zone(self.zone)?
            .missed(MissedTicks::from(missed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Paris;

    fn round_trip(schedule: &Schedule) {
        let spec = schedule.spec();
        let back = Schedule::from_spec(&spec).expect("the stored form reads back");
        assert_eq!(&back, schedule, "{spec}");
        assert_eq!(back.spec(), spec);
    }

    #[test]
    fn every_kind_of_schedule_survives_its_stored_form() {
        let weekdays = Schedule::cron("0 9 * * MON-FRI").expect("valid").tz(Paris);
        assert_eq!(weekdays.spec(), "cron|0 9 * * MON-FRI|Europe/Paris|skip");
        round_trip(&weekdays);
        round_trip(&weekdays.clone().missed(MissedTicks::RunOnce));
        let all = weekdays.missed(MissedTicks::RunAll { max: 4_000_000_000 });
        assert_eq!(
            all.spec(),
            "cron|0 9 * * MON-FRI|Europe/Paris|run_all(4000000000)"
        );
        round_trip(&all);
        round_trip(&Schedule::cron("*/5 * * * * *").expect("valid"));
        round_trip(&Schedule::cron("@daily").expect("valid"));
        let every = Schedule::every(Duration::from_secs(900))
            .expect("valid")
            .missed(MissedTicks::RunAll { max: 0 });
        assert_eq!(every.spec(), "every|900000|UTC|run_all(0)");
        round_trip(&every);
    }

    #[test]
    fn different_definitions_have_different_forms() {
        let base = Schedule::cron("0 9 * * *").expect("valid");
        let forms = [
            base.spec(),
            base.clone().tz(Paris).spec(),
            base.clone().missed(MissedTicks::RunOnce).spec(),
            Schedule::cron("0 10 * * *").expect("valid").spec(),
        ];
        for (i, a) in forms.iter().enumerate() {
            for b in &forms[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn malformed_forms_are_refused() {
        for bad in [
            "",
            "cron|0 9 * * *|UTC",
            "cron|0 9 * * *|UTC|skip|extra",
            "cron|61 9 * * *|UTC|skip",
            "cron|0 9 * * *|Nowhere/City|skip",
            "cron|0 9 * * *|UTC|sometimes",
            "every|abc|UTC|skip",
            "every|0|UTC|skip",
            "every|1000|Europe/Paris|skip",
            "hourly|0|UTC|skip",
        ] {
            assert!(
                matches!(Schedule::from_spec(bad), Err(Error::InvalidSchedule { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn a_registration_spec_builds_its_schedule() {
        let spec = ScheduleSpec {
            expression: "0 9 * * MON-FRI",
            zone: "Europe/Paris",
            missed: "run_once",
        };
        let schedule = spec.schedule().expect("valid");
        assert_eq!(
            schedule.spec(),
            "cron|0 9 * * MON-FRI|Europe/Paris|run_once"
        );
        let bad = ScheduleSpec {
            missed: "twice",
            ..spec
        };
        assert!(matches!(bad.schedule(), Err(Error::InvalidSchedule { .. })));
    }
}
