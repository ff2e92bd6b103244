//! A `#[task(cron = ...)]` task: its schedule is stored at start-up under the
//! task's name, and its ticks run, each knowing its instant. (A binary of
//! its own: every scheduler of this binary stores this schedule.)
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use scheduler::testing::TestScheduler;
use scheduler::{JobContext, ScheduleSource};

static TICKS: Mutex<Vec<Option<DateTime<Utc>>>> = Mutex::new(Vec::new());

/// 09:00 on Paris time, every day.
#[scheduler::task(cron = "0 9 * * *", tz = "Europe/Paris")]
async fn morning_report(ctx: JobContext) -> Result<(), String> {
    TICKS.lock().unwrap().push(ctx.planned_tick());
    Ok(())
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_cron_task_is_scheduled_at_start_up_and_runs_at_each_tick() {
    let test = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .start()
        .await
        .unwrap();
    let listed = test.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "morning_report");
    assert_eq!(listed[0].source, ScheduleSource::Code);
    assert_eq!(listed[0].zone, "Europe/Paris");
    assert_eq!(listed[0].next_runs[0], at("2026-06-01T07:00:00Z"));
    assert_eq!(
        // To 07:30 UTC the next day: the last tick's outcome is still kept.
        test.advance_to(at("2026-06-02T07:30:00Z")).await.unwrap(),
        2
    );
    assert_eq!(
        *TICKS.lock().unwrap(),
        [
            Some(at("2026-06-01T07:00:00Z")),
            Some(at("2026-06-02T07:00:00Z"))
        ]
    );
    let listed = test.schedules().await.unwrap();
    assert_eq!(
        listed[0].last_run,
        Some((at("2026-06-02T07:00:00Z"), scheduler::JobStatus::Completed))
    );
}
