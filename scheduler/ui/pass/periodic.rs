//! A periodic task: `cron`, `tz` and `missed`, with a dependency and the job
//! context; the registration carries the schedule and builds it.

use scheduler::chrono::{DateTime, Utc};
use scheduler::{task, Dep, JobContext, MissedTicks, Task, TaskError};

pub struct Reports;

#[task(cron = "0 9 * * MON-FRI", tz = "Europe/Paris", missed = "run_all(3)")]
async fn weekday_report(reports: Dep<Reports>, ctx: JobContext) -> Result<(), TaskError> {
    let _ = (reports, ctx.planned_tick());
    Ok(())
}

/// Without `tz` the expression is read in UTC, and missed ticks are skipped.
#[task(cron = "*/15 * * * *")]
async fn every_quarter_hour() {}

/// A six-field expression: seconds first.
#[task(cron = "30 0 3 * * *", missed = "run_once", crate = scheduler)]
async fn nightly(ctx: JobContext) {
    let _ = ctx;
}

/// An ordinary task has no schedule.
#[task]
async fn ordinary(n: u8) {
    let _ = n;
}

fn main() {
    let spec = weekday_report::registration()
        .schedule
        .expect("a periodic task has a schedule");
    assert_eq!(spec.expression, "0 9 * * MON-FRI");
    assert_eq!(spec.zone, "Europe/Paris");
    assert_eq!(spec.missed, "run_all(3)");
    let schedule = spec.schedule().expect("checked at compile time");
    assert_eq!(schedule.missed_policy(), MissedTicks::RunAll { max: 3 });
    let friday: DateTime<Utc> = "2026-07-03T12:00:00Z".parse().expect("a time");
    let monday_9am_paris: DateTime<Utc> = "2026-07-06T07:00:00Z".parse().expect("a time");
    assert_eq!(schedule.next_after(friday), Some(monday_9am_paris));

    let quarter = every_quarter_hour::registration().schedule.expect("a schedule");
    assert_eq!((quarter.zone, quarter.missed), ("UTC", "skip"));
    let nightly = nightly::registration().schedule.expect("a schedule");
    assert_eq!(nightly.schedule().map(|s| s.missed_policy()).ok(), Some(MissedTicks::RunOnce));
    assert!(ordinary::registration().schedule.is_none());
    // The helpers of a periodic task take no stored arguments.
    let _ = weekday_report::job();
}
