//! Periodic tasks: when they run. [`Schedule`] computes the ticks of a cron
//! expression in a time zone, or of a fixed period; [`MissedTicks`] says what
//! happens to ticks that passed with no scheduler running; `plan` turns the
//! last planned tick and the time now into what to run.
//!
//! `schedule` is the public type, `wall_clock` reads cron expressions on a
//! zone's clock with the daylight-saving rule, `every` aligns fixed periods to
//! the epoch, `missed` holds the policy and the plan, `spec` the text forms,
//! `syntax` the parsers shared with `#[task(cron = ...)]`.
//!
//! At run time: `store` holds what the backends store of a schedule and the
//! ids of its tick jobs, `planner` plans ticks as ordinary jobs (every worker
//! runs one; no leader), `info` is what `Scheduler::schedules` reports.

mod every;
mod info;
pub(crate) mod missed;
pub(crate) mod planner;
mod schedule;
mod spec;
pub(crate) mod store;
mod syntax;
mod wall_clock;

#[cfg(test)]
mod dst_tests;
#[cfg(test)]
mod planner_tests;

pub use self::info::ScheduleInfo;
pub use self::missed::MissedTicks;
pub use self::schedule::Schedule;
pub use self::spec::ScheduleSpec;
pub use self::store::ScheduleSource;

#[cfg(test)]
mod tests {
    /// `#[task(cron = ...)]` checks with a copy of `syntax.rs`; they must not drift.
    #[test]
    fn the_macro_crate_parses_with_the_same_syntax_file() {
        assert!(
            include_str!("syntax.rs") == include_str!("../../../scheduler-macros/src/syntax.rs"),
            "scheduler/src/periodic/syntax.rs and scheduler-macros/src/syntax.rs differ: copy one over the other"
        );
    }
}
