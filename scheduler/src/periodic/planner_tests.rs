//! The planner against the in-memory backend on a manual clock: stale
//! planning steps, and the deploy rules for the schedules of `#[task(cron)]`.

use std::sync::Arc;
use std::time::Duration;

use crate::api::registry::{Location, Registry, TaskFuture, TaskRegistration};
use crate::api::task::TaskOptions;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, ClaimTicket, Finished};
use crate::clock::{Clock, ManualClock};
use crate::periodic::planner::{step, Planner};
use crate::periodic::store::{tick_id, PlanOutcome, ScheduleSource};
use crate::periodic::{Schedule, ScheduleSpec};
use crate::{Error, JobContext, JobStatus, SchedulerConfig};

fn run(_ctx: JobContext, _payload: &[u8]) -> Result<TaskFuture, Error> {
    Ok(Box::pin(async { Ok(None) }))
}

const HERE: Location = Location {
    file: file!(),
    line: line!(),
    column: column!(),
    module_path: module_path!(),
};

/// Task `report` as three binaries define it: at 09:00, at 10:00, and
/// without a schedule.
static AT_NINE: TaskRegistration = registration(Some("0 9 * * *"));
static AT_TEN: TaskRegistration = registration(Some("0 10 * * *"));
static UNSCHEDULED: TaskRegistration = registration(None);

const fn registration(cron: Option<&'static str>) -> TaskRegistration {
    TaskRegistration {
        name: "report",
        location: HERE,
        options: TaskOptions::DEFAULT,
        params: Some(&[]),
        dependencies: Vec::new,
        schedule: match cron {
            Some(expression) => Some(ScheduleSpec {
                expression,
                zone: "UTC",
                missed: "skip",
            }),
            None => None,
        },
        run,
    }
}

fn setup(start: &str) -> (Arc<MemoryBackend>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_at(start.parse().expect("a time")));
    let backend = Arc::new(MemoryBackend::new(
        SchedulerConfig::default(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    ));
    (backend, clock)
}

fn planner(backend: &Arc<MemoryBackend>, task: &'static TaskRegistration) -> Planner {
    let registry = Registry::collect(&[task]).expect("one task");
    Planner::new(Arc::clone(backend) as Arc<dyn Backend>, registry)
}

fn ms(text: &str) -> i64 {
    text.parse::<chrono::DateTime<chrono::Utc>>()
        .expect("a time")
        .timestamp_millis()
}

async fn status(backend: &MemoryBackend, id: &str) -> Option<JobStatus> {
    backend
        .inspect(id)
        .await
        .expect("inspect")
        .map(|i| i.status)
}

/// Runs every job due now to completion; their ids.
async fn run_due(backend: &MemoryBackend) -> Vec<String> {
    let claim = backend
        .claim(
            "w",
            100,
            Duration::from_secs(60),
            &ClaimTicket::default(),
            &crate::backend::Serving::everything(),
        )
        .await
        .expect("claim");
    let finished: Vec<Finished> = claim
        .jobs
        .iter()
        .map(|job| Finished {
            id: job.id.clone(),
            task: job.task.clone(),
            generation: job.generation,
            attempt: job.attempt,
            outcome: "ok",
            text: String::new(),
            retry_delay_ms: 0,
        })
        .collect();
    backend.complete(&finished).await.expect("complete");
    claim.jobs.into_iter().map(|j| j.id).collect()
}

/// Stores the run-time schedule `beat` (task `report`, every second); returns it.
async fn put_every_second_beat(backend: &MemoryBackend) -> Schedule {
    let every_second = Schedule::every(Duration::from_secs(1)).expect("valid");
    let definition = crate::periodic::store::Definition::new(
        "report",
        b"[]".to_vec(),
        1,
        every_second.spec(),
        ScheduleSource::Runtime,
    );
    backend
        .put_schedule("beat", &definition)
        .await
        .expect("put");
    every_second
}

#[tokio::test]
async fn a_stale_planning_step_changes_nothing_even_after_its_tick_ran() {
    let (backend, clock) = setup("2026-05-01T00:00:00.500Z");
    let planner = planner(&backend, &UNSCHEDULED);
    let every_second = put_every_second_beat(&backend).await;
    planner.pass().await.expect("first pass");
    // At the first tick, a planner reads the schedule and computes its step.
    clock.advance(Duration::from_millis(500));
    let (now, stored) = backend.list_schedules().await.expect("list");
    let call = step(&stored[0], &every_second, now).expect("due");
    assert_eq!(
        backend.plan_schedule(&call).await.expect("plan"),
        PlanOutcome::Planned {
            created: 1,
            cancelled: 0
        }
    );
    // Both ticks run; the second one's id is free again once finished.
    clock.advance(Duration::from_secs(1));
    assert_eq!(run_due(&backend).await.len(), 2);
    // The same step again (a planner that read the same state, delayed):
    // the cursor moved, so it creates nothing, and the tick does not run twice.
    assert_eq!(
        backend.plan_schedule(&call).await.expect("plan"),
        PlanOutcome::CursorMoved
    );
    assert!(run_due(&backend).await.is_empty(), "a tick ran twice");
}

#[tokio::test]
async fn a_new_binary_replaces_the_code_schedule_in_place_and_an_old_one_plans_nothing() {
    let (backend, clock) = setup("2026-05-01T08:00:00Z");
    let v1 = planner(&backend, &AT_NINE);
    v1.sync_code_schedules().await.expect("sync v1");
    v1.pass().await.expect("pass v1");
    let nine = tick_id("report", ms("2026-05-01T09:00:00Z"));
    assert!(matches!(
        status(&backend, &nine).await,
        Some(JobStatus::Deferred { .. })
    ));
    // The new binary starts: its 10:00 tick replaces the 09:00 one.
    let v2 = planner(&backend, &AT_TEN);
    v2.sync_code_schedules().await.expect("sync v2");
    v2.pass().await.expect("pass v2");
    assert_eq!(status(&backend, &nine).await, Some(JobStatus::Cancelled));
    let ten = tick_id("report", ms("2026-05-01T10:00:00Z"));
    assert!(matches!(
        status(&backend, &ten).await,
        Some(JobStatus::Deferred { .. })
    ));
    // The old binary, still running, plans nothing for it: at 10:00 only
    // the new expression's tick runs, and v2 plans the next one.
    clock.advance(Duration::from_secs(7200));
    v1.pass().await.expect("pass v1");
    assert_eq!(run_due(&backend).await, vec![ten]);
    let (_, stored) = backend.list_schedules().await.expect("list");
    assert_eq!(stored[0].cursor_ms, Some(ms("2026-05-01T10:00:00Z")));
    v2.pass().await.expect("pass v2");
    let (_, stored) = backend.list_schedules().await.expect("list");
    assert_eq!(stored[0].cursor_ms, Some(ms("2026-05-02T10:00:00Z")));
}

#[tokio::test]
async fn a_binary_without_the_cron_attribute_removes_the_schedule_and_one_without_the_task_leaves_it(
) {
    let (backend, _clock) = setup("2026-05-01T08:00:00Z");
    let v1 = planner(&backend, &AT_NINE);
    v1.sync_code_schedules().await.expect("sync");
    v1.pass().await.expect("pass");
    // A binary that does not know the task leaves the schedule alone.
    let registry = Registry::collect(&[]).expect("empty");
    let stranger = Planner::new(Arc::clone(&backend) as Arc<dyn Backend>, registry);
    stranger.sync_code_schedules().await.expect("sync");
    assert_eq!(backend.list_schedules().await.expect("list").1.len(), 1);
    // One that registers it without a schedule removes it and its tick.
    planner(&backend, &UNSCHEDULED)
        .sync_code_schedules()
        .await
        .expect("sync");
    assert!(backend.list_schedules().await.expect("list").1.is_empty());
    let nine = tick_id("report", ms("2026-05-01T09:00:00Z"));
    assert_eq!(status(&backend, &nine).await, Some(JobStatus::Cancelled));
}

#[test]
fn one_planning_step_creates_at_most_a_thousand_missed_ticks() {
    use crate::periodic::store::{Definition, Stored};
    use crate::MissedTicks;
    let every_second = Schedule::every(Duration::from_secs(1))
        .expect("valid")
        .missed(MissedTicks::RunAll { max: u32::MAX });
    let stored = Stored {
        name: "beat".into(),
        definition: Definition::new(
            "report",
            b"[]".to_vec(),
            1,
            every_second.spec(),
            ScheduleSource::Runtime,
        ),
        paused: false,
        // Planned last a year ago, with its tick job still pending.
        cursor_ms: Some(ms("2025-05-01T00:00:00Z")),
        cursor_generation: 7,
    };
    let now = ms("2026-05-01T00:00:00Z");
    let call = step(&stored, &every_second, now).expect("due");
    // The latest thousand missed ticks, then the next one ahead.
    assert_eq!(
        call.ticks.len(),
        crate::periodic::missed::MAX_MISSED_TICKS + 1
    );
    assert_eq!(call.ticks[0].0, now - 999_000);
    assert_eq!(call.ticks.last().map(|t| t.0), Some(now + 1000));
    assert!(call.cancel_cursor_tick);
}

/// A running planner that heard of no change (the schedule was stored by a
/// process that sends no notice, such as an older binary) plans at once when
/// a tick of that schedule starts on its worker, not at its next idle pass.
#[tokio::test]
async fn a_tick_of_a_schedule_its_planner_does_not_track_makes_it_plan_at_once() {
    let (backend, clock) = setup("2026-05-01T00:00:00.500Z");
    let running = planner(&backend, &UNSCHEDULED);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(running.clone().run(Duration::from_secs(3600), stop.clone()));
    // Its first pass finds no schedule: it idles for an hour.
    tokio::time::sleep(Duration::from_millis(50)).await;
    put_every_second_beat(&backend).await;
    // Another process plans the first tick.
    planner(&backend, &UNSCHEDULED)
        .pass()
        .await
        .expect("other pass");
    clock.advance(Duration::from_millis(500));
    // A job that is not a tick changes nothing; the first tick starts here.
    running.job_started("report-1");
    running.job_started(&tick_id("beat", ms("2026-05-01T00:00:01Z")));
    let second = ms("2026-05-01T00:00:02Z");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let cursor = loop {
        let (_, stored) = backend.list_schedules().await.expect("list");
        let cursor = stored[0].cursor_ms;
        if cursor == Some(second) || tokio::time::Instant::now() > deadline {
            break cursor;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.cancel();
    task.await.expect("planner ends");
    assert_eq!(cursor, Some(second), "the second tick was not planned");
}
