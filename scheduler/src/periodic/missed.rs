//! What a schedule does about ticks that passed while nothing planned them, and
//! the plan of one planning round.

use chrono::{DateTime, Utc};

use super::schedule::Schedule;
use super::syntax::{missed_text, MissedForm};

/// What a periodic task does about ticks that passed with no scheduler running
/// to plan them (a deploy, an outage). Ticks that were planned run as planned,
/// whatever the policy.
///
/// ```
/// use scheduler::{MissedTicks, Schedule};
///
/// // After a night down, run the last three missed hourly reports, oldest first.
/// let schedule = Schedule::cron("0 * * * *")?.missed(MissedTicks::RunAll { max: 3 });
/// assert_eq!(schedule.missed_policy(), MissedTicks::RunAll { max: 3 });
/// # Ok::<(), scheduler::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MissedTicks {
    /// Run none of them; go on with the next tick. The default.
    #[default]
    Skip,
    /// Run once now, for the latest missed tick, however many were missed.
    RunOnce,
    /// Run the latest `max` missed ticks now, oldest first; older ones are
    /// dropped. `max: 0` runs none, like [`Skip`](MissedTicks::Skip). At most
    /// 1,000 run after one outage, whatever `max` says, so that one planning
    /// call stays small.
    RunAll {
        /// The most missed ticks to run.
        max: u32,
    },
}

/// The most missed ticks one planning step runs, whatever `RunAll { max }`
/// says: they are created in one backend call (one Lua script on Redis), and
/// finding them walks back one tick at a time.
pub(crate) const MAX_MISSED_TICKS: usize = 1000;

impl MissedTicks {
    /// How many of the latest missed ticks run.
    fn keep(self) -> usize {
        match self {
            MissedTicks::Skip => 0,
            MissedTicks::RunOnce => 1,
            MissedTicks::RunAll { max } => {
                usize::try_from(max).map_or(MAX_MISSED_TICKS, |max| max.min(MAX_MISSED_TICKS))
            }
        }
    }

    /// The text form: `skip`, `run_once`, `run_all(N)`.
    pub(crate) fn text(self) -> String {
        missed_text(match self {
            MissedTicks::Skip => MissedForm::Skip,
            MissedTicks::RunOnce => MissedForm::RunOnce,
            MissedTicks::RunAll { max } => MissedForm::RunAll(max),
        })
    }
}

impl From<MissedForm> for MissedTicks {
    fn from(form: MissedForm) -> Self {
        match form {
            MissedForm::Skip => MissedTicks::Skip,
            MissedForm::RunOnce => MissedTicks::RunOnce,
            MissedForm::RunAll(max) => MissedTicks::RunAll { max },
        }
    }
}

/// One planning round of a schedule: see [`Schedule::plan`].
#[allow(dead_code, reason = "called by the planner (issue 15, part B)")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TickPlan {
    /// Missed ticks to run now, oldest first.
    pub(crate) run_now: Vec<DateTime<Utc>>,
    /// The next tick strictly after now, to plan ahead; `None` when the
    /// schedule has no more ticks.
    pub(crate) next: Option<DateTime<Utc>>,
}

impl Schedule {
    /// One planning round. `cursor` is the last tick that was planned (`None`
    /// for a schedule never planned before); the planner enqueues `next` as a
    /// deferred job and stores it as the new cursor, so ticks in
    /// `(cursor, now]` are the ones nobody planned: the policy picks which of
    /// them run now. A new schedule runs nothing missed.
    ///
    /// The missed ticks are found walking back from `now`, so the work is
    /// bounded by what the policy keeps, not by how long the outage was.
    #[allow(dead_code, reason = "called by the planner (issue 15, part B)")]
    pub(crate) fn plan(&self, cursor: Option<DateTime<Utc>>, now: DateTime<Utc>) -> TickPlan {
        let run_now = match cursor {
            Some(cursor) => self.latest_between(cursor, now, self.missed_policy().keep()),
            None => Vec::new(),
        };
        TickPlan {
            run_now,
            next: self.next_after(now),
        }
    }

    /// The latest `keep` ticks in `(after, up_to]`, oldest first.
    fn latest_between(
        &self,
        after: DateTime<Utc>,
        up_to: DateTime<Utc>,
        keep: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut latest = Vec::new();
        if keep == 0 {
            return latest;
        }
        let mut tick = self.at_or_before(up_to);
        while let Some(at) = tick.filter(|at| *at > after) {
            latest.push(at);
            if latest.len() == keep {
                break;
            }
            tick = self.before(at);
        }
        latest.reverse();
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a valid RFC 3339 time")
    }

    fn hourly(policy: MissedTicks) -> Schedule {
        Schedule::cron("0 * * * *").expect("valid").missed(policy)
    }

    /// Planned last at 01:00, back at 05:30: 02:00, 03:00, 04:00 and 05:00 were missed.
    const CURSOR: &str = "2026-06-01T01:00:00Z";
    const NOW: &str = "2026-06-01T05:30:00Z";

    #[test]
    fn skip_runs_no_missed_tick() {
        let plan = hourly(MissedTicks::Skip).plan(Some(at(CURSOR)), at(NOW));
        assert_eq!(plan.run_now, Vec::<DateTime<Utc>>::new());
        assert_eq!(plan.next, Some(at("2026-06-01T06:00:00Z")));
    }

    #[test]
    fn run_once_runs_the_latest_missed_tick() {
        let plan = hourly(MissedTicks::RunOnce).plan(Some(at(CURSOR)), at(NOW));
        assert_eq!(plan.run_now, vec![at("2026-06-01T05:00:00Z")]);
        assert_eq!(plan.next, Some(at("2026-06-01T06:00:00Z")));
    }

    #[test]
    fn run_all_runs_the_latest_max_oldest_first() {
        let plan = hourly(MissedTicks::RunAll { max: 3 }).plan(Some(at(CURSOR)), at(NOW));
        assert_eq!(
            plan.run_now,
            vec![
                at("2026-06-01T03:00:00Z"),
                at("2026-06-01T04:00:00Z"),
                at("2026-06-01T05:00:00Z"),
            ]
        );
        // More room than missed ticks: all four, never the cursor itself.
        let plan = hourly(MissedTicks::RunAll { max: 10 }).plan(Some(at(CURSOR)), at(NOW));
        assert_eq!(
            plan.run_now,
            vec![
                at("2026-06-01T02:00:00Z"),
                at("2026-06-01T03:00:00Z"),
                at("2026-06-01T04:00:00Z"),
                at("2026-06-01T05:00:00Z"),
            ]
        );
        let none = hourly(MissedTicks::RunAll { max: 0 }).plan(Some(at(CURSOR)), at(NOW));
        assert!(none.run_now.is_empty());
    }

    #[test]
    fn a_tick_at_now_counts_as_missed_and_the_next_is_after_now() {
        let plan = hourly(MissedTicks::RunOnce).plan(Some(at(CURSOR)), at("2026-06-01T05:00:00Z"));
        assert_eq!(plan.run_now, vec![at("2026-06-01T05:00:00Z")]);
        assert_eq!(plan.next, Some(at("2026-06-01T06:00:00Z")));
    }

    #[test]
    fn nothing_is_missed_before_the_next_tick_is_due() {
        // The cursor was planned for 06:00, and it is 05:30: nothing passed unplanned.
        let plan =
            hourly(MissedTicks::RunAll { max: 5 }).plan(Some(at("2026-06-01T06:00:00Z")), at(NOW));
        assert!(plan.run_now.is_empty());
        assert_eq!(plan.next, Some(at("2026-06-01T06:00:00Z")));
    }

    #[test]
    fn a_new_schedule_runs_nothing_missed() {
        let plan = hourly(MissedTicks::RunAll { max: 5 }).plan(None, at(NOW));
        assert!(plan.run_now.is_empty());
        assert_eq!(plan.next, Some(at("2026-06-01T06:00:00Z")));
    }

    #[test]
    fn a_long_outage_costs_only_what_the_policy_keeps() {
        // Ten years of a tick every second: walking them all would take minutes.
        let every_second = Schedule::cron("* * * * * *")
            .expect("valid")
            .missed(MissedTicks::RunAll { max: 2 });
        let plan = every_second.plan(Some(at("2016-01-01T00:00:00Z")), at(NOW));
        assert_eq!(
            plan.run_now,
            vec![at("2026-06-01T05:29:59Z"), at("2026-06-01T05:30:00Z")]
        );
        assert_eq!(plan.next, Some(at("2026-06-01T05:30:01Z")));
    }

    #[test]
    fn run_all_runs_at_most_a_thousand_ticks_whatever_its_max() {
        let every_second = Schedule::cron("* * * * * *")
            .expect("valid")
            .missed(MissedTicks::RunAll { max: u32::MAX });
        let plan = every_second.plan(Some(at("2016-01-01T00:00:00Z")), at(NOW));
        assert_eq!(plan.run_now.len(), MAX_MISSED_TICKS);
        // The latest ones, oldest first: 05:13:21 through 05:30:00.
        assert_eq!(plan.run_now.first(), Some(&at("2026-06-01T05:13:21Z")));
        assert_eq!(plan.run_now.last(), Some(&at(NOW)));
    }

    #[test]
    fn every_schedules_plan_the_same_way() {
        let schedule = Schedule::every(std::time::Duration::from_secs(15 * 60))
            .expect("valid")
            .missed(MissedTicks::RunAll { max: 2 });
        let plan = schedule.plan(Some(at(CURSOR)), at(NOW));
        assert_eq!(
            plan.run_now,
            vec![at("2026-06-01T05:15:00Z"), at("2026-06-01T05:30:00Z")]
        );
        assert_eq!(plan.next, Some(at("2026-06-01T05:45:00Z")));
    }
}
