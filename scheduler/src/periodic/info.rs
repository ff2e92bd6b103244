//! What [`Scheduler::schedules`](crate::Scheduler::schedules) reports about
//! one periodic schedule.

use chrono::{DateTime, Utc};

use crate::api::job::JobStatus;
use crate::periodic::store::ScheduleSource;

/// One stored periodic schedule, as [`Scheduler::schedules`](crate::Scheduler::schedules)
/// lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// Its name (a code schedule is named after its task).
    pub name: String,
    /// The task each tick runs.
    pub task: String,
    /// The cron expression, or `every 15m` for a period
    /// ([`Schedule::expression`](crate::Schedule::expression)).
    pub expression: String,
    /// The IANA name of the zone the expression is read in.
    pub zone: String,
    /// Where it was defined.
    pub source: ScheduleSource,
    /// Whether it is paused (no tick runs until it is resumed).
    pub paused: bool,
    /// The next few ticks (none while paused).
    pub next_runs: Vec<DateTime<Utc>>,
    /// The latest tick at or before now whose job is still known, and where
    /// that job is (`Completed`, `Failed`, `Running`, ...). `None` when no
    /// tick ran yet, or its outcome is no longer kept (`keep_result`).
    pub last_run: Option<(DateTime<Utc>, JobStatus)>,
}
