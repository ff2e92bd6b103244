//! Periodic schedules at run time: the behaviours shared by both backends
//! (racing planners, pause and resume, remove, redefinition, the reserved
//! id prefix), then the ones the manual clock makes deterministic (missed
//! ticks, a month of daily ticks across a daylight-saving change).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use scheduler::chrono_tz::Europe::Paris;
use scheduler::testing::TestScheduler;
use scheduler::{
    EnqueueOutcome, Error, IfRunning, JobContext, JobRequest, JobStatus, MissedTicks, Schedule,
    ScheduleSource, SchedulerConfig, When,
};
use scheduler_tests::setup::{fast_worker, probe_job, producer, wait_status, worker, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{conformance, namespace, wait_until, Fixture, Probe};

conformance!(
    racing_planners_create_and_run_each_tick_once,
    pause_removes_the_pending_tick_and_resume_plans_from_now,
    remove_cancels_the_pending_tick_and_forgets_the_schedule,
    a_new_definition_replaces_the_schedule_in_place,
    ids_with_the_schedule_prefix_are_refused_and_names_are_checked,
    schedules_survive_a_restart_of_the_process,
    a_stale_planning_step_changes_nothing_even_after_its_tick_ran,
    a_running_worker_plans_every_tick_of_a_schedule_another_process_defined,
    a_running_worker_plans_every_tick_after_another_process_resumes,
    a_busy_worker_plans_each_tick_of_a_new_schedule_on_time,
);

fn probe_request(arg: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new(arg))
}

fn yearly() -> Schedule {
    // Midnight on the 1st of January: never due while a test runs.
    Schedule::cron("0 0 1 1 *").unwrap()
}

/// The tick instant named by a tick job's id.
fn tick_of(job_id: &str) -> Option<i64> {
    job_id
        .strip_prefix("schedule:")?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

/// Tick job ids of schedule `name` among the pending jobs.
async fn pending_ticks(s: &scheduler::Scheduler, name: &str) -> Vec<String> {
    let prefix = format!("schedule:{name}:");
    s.pending::<ProbeTask>()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.job_id)
        .filter(|id| id.starts_with(&prefix))
        .collect()
}

async fn racing_planners_create_and_run_each_tick_once(fx: Fixture) {
    let probe = Probe::default();
    let ns = namespace("race");
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(worker(&fx.url(), &ns, &probe).await);
    }
    let every_second = Schedule::every(Duration::from_secs(1)).unwrap();
    workers[0]
        .schedule("beat", probe_request("beat"), every_second)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    workers[1].pause_schedule("beat").await.unwrap();
    // Let the last ticks that started finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut runs: BTreeMap<i64, usize> = BTreeMap::new();
    for run in probe.runs() {
        *runs
            .entry(tick_of(&run.job_id).expect("a tick"))
            .or_default() += 1;
    }
    for s in &workers {
        s.close().await;
    }
    assert!(runs.len() >= 3, "too few ticks ran: {runs:?}");
    assert!(runs.values().all(|n| *n == 1), "a tick ran twice: {runs:?}");
    // Consecutive seconds: no tick was lost between the first and the last.
    let ticks: Vec<i64> = runs.keys().copied().collect();
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == 1_000),
        "ticks are not consecutive seconds: {ticks:?}"
    );
    for run in probe.runs() {
        assert_eq!(
            run.scheduled_at.timestamp_millis(),
            tick_of(&run.job_id).unwrap()
        );
        assert!(run.start.timestamp_millis() >= tick_of(&run.job_id).unwrap());
    }
}

async fn pause_removes_the_pending_tick_and_resume_plans_from_now(fx: Fixture) {
    let s = producer(&fx.url(), &namespace("pause")).await;
    s.schedule("yearly", probe_request("y"), yearly())
        .await
        .unwrap();
    let planned = pending_ticks(&s, "yearly").await;
    assert_eq!(planned.len(), 1, "{planned:?}");
    let listed = s.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source, ScheduleSource::Runtime);
    assert_eq!(listed[0].task, "probe");
    assert!(!listed[0].paused);
    assert_eq!(
        listed[0].next_runs[0].timestamp_millis(),
        tick_of(&planned[0]).unwrap()
    );

    s.pause_schedule("yearly").await.unwrap();
    assert_eq!(s.status(&planned[0]).await.unwrap(), JobStatus::Cancelled);
    assert!(pending_ticks(&s, "yearly").await.is_empty());
    let listed = s.schedules().await.unwrap();
    assert!(listed[0].paused && listed[0].next_runs.is_empty());
    // Pausing again changes nothing.
    s.pause_schedule("yearly").await.unwrap();

    s.resume_schedule("yearly").await.unwrap();
    let again = pending_ticks(&s, "yearly").await;
    assert_eq!(again, planned, "the same tick is planned again");
    assert!(matches!(
        s.status(&again[0]).await.unwrap(),
        JobStatus::Deferred { .. }
    ));
    assert!(!s.schedules().await.unwrap()[0].paused);
    assert!(matches!(
        s.pause_schedule("nope").await,
        Err(Error::ScheduleNotFound(name)) if name == "nope"
    ));
    assert!(matches!(
        s.resume_schedule("nope").await,
        Err(Error::ScheduleNotFound(_))
    ));
    s.close().await;
}

async fn remove_cancels_the_pending_tick_and_forgets_the_schedule(fx: Fixture) {
    let s = producer(&fx.url(), &namespace("remove")).await;
    s.schedule("gone", probe_request("g"), yearly())
        .await
        .unwrap();
    let planned = pending_ticks(&s, "gone").await;
    assert_eq!(planned.len(), 1);
    s.remove_schedule("gone").await.unwrap();
    assert_eq!(s.status(&planned[0]).await.unwrap(), JobStatus::Cancelled);
    assert!(s.schedules().await.unwrap().is_empty());
    assert!(matches!(
        s.remove_schedule("gone").await,
        Err(Error::ScheduleNotFound(_))
    ));
    s.close().await;
}

async fn a_new_definition_replaces_the_schedule_in_place(fx: Fixture) {
    let s = producer(&fx.url(), &namespace("redefine")).await;
    s.schedule("report", probe_request("v1"), yearly())
        .await
        .unwrap();
    let first = pending_ticks(&s, "report").await;
    let generation = s.info(&first[0]).await.unwrap().unwrap().generation;
    // The same definition again: nothing changes.
    s.schedule("report", probe_request("v1"), yearly())
        .await
        .unwrap();
    assert_eq!(pending_ticks(&s, "report").await, first);
    assert_eq!(
        s.info(&first[0]).await.unwrap().unwrap().generation,
        generation
    );
    // Midsummer instead: the old tick is gone, one tick of the new expression is planned.
    let midsummer = Schedule::cron("0 12 21 6 *").unwrap();
    s.schedule("report", probe_request("v2"), midsummer.clone())
        .await
        .unwrap();
    assert_eq!(s.status(&first[0]).await.unwrap(), JobStatus::Cancelled);
    let second = pending_ticks(&s, "report").await;
    assert_eq!(second.len(), 1, "{second:?}");
    let expected = midsummer.next_after(Utc::now()).unwrap().timestamp_millis();
    assert_eq!(tick_of(&second[0]), Some(expected));
    let args = s.pending::<ProbeTask>().await.unwrap();
    assert_eq!(args[0].args.arg, "v2");
    let listed = s.schedules().await.unwrap();
    assert_eq!(listed[0].expression, "0 12 21 6 *");
    s.close().await;
}

async fn ids_with_the_schedule_prefix_are_refused_and_names_are_checked(fx: Fixture) {
    let s = producer(&fx.url(), &namespace("prefix")).await;
    let reserved = "schedule:report:1780000000000";
    let refused = |r: Result<EnqueueOutcome, Error>| {
        assert!(
            matches!(&r, Err(Error::InvalidJobId { reason, .. }) if reason.contains("schedule:")),
            "{r:?}"
        );
    };
    refused(s.enqueue(probe_job(reserved, "x")).await);
    refused(s.enqueue(probe_request("x").request_id(reserved)).await);
    refused(
        s.enqueue_untyped(
            "probe",
            Some(reserved),
            &serde_json::json!({"arg": "x"}),
            When::Now,
        )
        .await,
    );
    assert!(matches!(
        s.replace(probe_job(reserved, "x"), IfRunning::Keep).await,
        Err(Error::InvalidJobId { .. })
    ));
    let many = s
        .enqueue_many([probe_job("fine", "x"), probe_job(reserved, "x")])
        .await;
    assert!(matches!(many, Err(Error::InvalidJobId { .. })), "{many:?}");
    // Other ids starting alike are fine; a tick can be looked at and cancelled.
    assert!(s
        .enqueue(probe_job("schedules-report", "x"))
        .await
        .unwrap()
        .is_enqueued());
    assert_eq!(s.status(reserved).await.unwrap(), JobStatus::NotFound);
    for bad in ["", "a{b}", "line\nbreak"] {
        assert!(
            matches!(
                s.schedule(bad, probe_request("x"), yearly()).await,
                Err(Error::InvalidSchedule { .. })
            ),
            "{bad:?}"
        );
    }
    s.close().await;
}

/// One run of the periodic test task: job id, planned tick, scheduled time.
type Seen = (String, Option<DateTime<Utc>>, DateTime<Utc>);

/// What the periodic test task saw.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// Records each run (tests tell theirs apart by the schedule name in the id).
#[scheduler::task]
async fn record_tick(ctx: JobContext) -> Result<(), String> {
    SEEN.lock().unwrap().push((
        ctx.job_id().to_string(),
        ctx.planned_tick(),
        ctx.scheduled_at(),
    ));
    Ok(())
}

/// The runs of schedule `name` so far: (planned tick, scheduled time).
fn seen(name: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let prefix = format!("schedule:{name}:");
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(id, _, _)| id.starts_with(&prefix))
        .map(|(id, tick, at)| {
            let tick = tick.expect("a tick knows its instant");
            assert_eq!(tick.timestamp_millis(), tick_of(id).unwrap());
            (tick, *at)
        })
        .collect()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// An every-minute schedule that ran once, then an hour with no worker:
/// what runs when a worker is back. Returns the ticks that ran after the
/// outage, and the state of the tick planned before it.
async fn after_an_hour_long_outage(
    name: &str,
    policy: MissedTicks,
) -> (Vec<DateTime<Utc>>, JobStatus) {
    let test = TestScheduler::builder()
        .start_at(at("2026-02-02T00:00:30Z"))
        .start()
        .await
        .unwrap();
    let every_minute = Schedule::every(Duration::from_secs(60))
        .unwrap()
        .missed(policy);
    test.schedule(name, record_tick::job(), every_minute)
        .await
        .unwrap();
    assert_eq!(test.advance(Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(seen(name).len(), 1);
    let planned = format!(
        "schedule:{name}:{}",
        at("2026-02-02T00:02:00Z").timestamp_millis()
    );
    // The outage: the clock moves an hour with nothing running.
    test.clock().advance(Duration::from_secs(3600));
    test.run_until_idle().await.unwrap();
    let after: Vec<DateTime<Utc>> = seen(name)[1..].iter().map(|(tick, _)| *tick).collect();
    let state = test.status(&planned).await.unwrap();
    // Planning goes on from now, whatever the policy.
    let next = test.schedules().await.unwrap()[0].next_runs[0];
    assert_eq!(next, at("2026-02-02T01:02:00Z"));
    (after, state)
}

#[tokio::test]
async fn missed_ticks_follow_the_policy_after_an_outage() {
    // Back at 01:01:00: the tick planned for 00:02 and the ones up to 01:01 were missed.
    let (skip, planned) = after_an_hour_long_outage("skip", MissedTicks::Skip).await;
    assert!(skip.is_empty(), "{skip:?}");
    assert_eq!(planned, JobStatus::Cancelled);

    let (once, planned) = after_an_hour_long_outage("once", MissedTicks::RunOnce).await;
    assert_eq!(once, [at("2026-02-02T01:01:00Z")]);
    assert_eq!(planned, JobStatus::Cancelled);

    let (all, planned) = after_an_hour_long_outage("all", MissedTicks::RunAll { max: 5 }).await;
    let want: Vec<DateTime<Utc>> = (0..5)
        .map(|i| at("2026-02-02T00:57:00Z") + TimeDelta::minutes(i))
        .collect();
    assert_eq!(all, want, "the latest five, oldest first");
    assert_eq!(planned, JobStatus::Cancelled);

    // Enough room: the planned tick itself is kept and runs first.
    let (every, planned) =
        after_an_hour_long_outage("every", MissedTicks::RunAll { max: 100 }).await;
    assert_eq!(every.len(), 60, "00:02 to 01:01");
    assert_eq!(every[0], at("2026-02-02T00:02:00Z"));
    assert_eq!(planned, JobStatus::Completed);
}

#[tokio::test]
async fn a_late_tick_within_its_grace_is_not_missed() {
    let test = TestScheduler::builder()
        .start_at(at("2026-02-02T00:00:30Z"))
        .start()
        .await
        .unwrap();
    let hourly = Schedule::cron("0 * * * *").unwrap();
    test.schedule("late", record_tick::job(), hourly)
        .await
        .unwrap();
    // 59 s late (the grace is min(1 h, 60 s)): it runs, even with `Skip`.
    test.clock().advance(Duration::from_secs(3600 - 30 + 59));
    test.run_until_idle().await.unwrap();
    assert_eq!(seen("late").len(), 1);
    assert_eq!(seen("late")[0].0, at("2026-02-02T01:00:00Z"));
}

#[tokio::test]
async fn a_month_of_daily_ticks_runs_each_at_its_time_across_a_dst_change() {
    let test = TestScheduler::builder()
        .start_at(at("2026-03-15T00:00:00Z"))
        // Every tick's outcome is still there to read at the end.
        .config(SchedulerConfig {
            keep_result: Duration::from_secs(60 * 86_400),
            ..SchedulerConfig::default()
        })
        .start()
        .await
        .unwrap();
    let nine_in_paris = Schedule::cron("0 9 * * *").unwrap().tz(Paris);
    test.schedule("paris", record_tick::job(), nine_in_paris)
        .await
        .unwrap();
    let ran = test
        .advance(Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert_eq!(ran, 30);
    let runs = seen("paris");
    assert_eq!(runs.len(), 30);
    for (day, (tick, scheduled_at)) in runs.iter().enumerate() {
        let date = at("2026-03-15T00:00:00Z") + TimeDelta::days(day as i64);
        // 09:00 CET is 08:00 UTC until the clocks go forward on 29 March,
        // then 09:00 CEST is 07:00 UTC.
        let hour = if date < at("2026-03-29T00:00:00Z") {
            8
        } else {
            7
        };
        let want = date + TimeDelta::hours(hour);
        assert_eq!(*tick, want, "day {day}");
        assert_eq!(*scheduled_at, want, "day {day}");
        let id = format!("schedule:paris:{}", want.timestamp_millis());
        let info = test.info(&id).await.unwrap().unwrap();
        assert_eq!(info.started_at, Some(want), "day {day} started late");
        assert_eq!(info.status, JobStatus::Completed);
    }
    // The next one is planned.
    let next = test.schedules().await.unwrap()[0].next_runs[0];
    assert_eq!(next, at("2026-04-14T07:00:00Z"));
}

/// The ticks a daily schedule runs over the three days from `start`, on
/// the manual clock.
async fn three_days_of(name: &str, schedule: Schedule, start: &str) -> Vec<DateTime<Utc>> {
    let test = TestScheduler::builder()
        .start_at(at(start))
        .start()
        .await
        .unwrap();
    test.schedule(name, record_tick::job(), schedule)
        .await
        .unwrap();
    test.advance(Duration::from_secs(3 * 86_400)).await.unwrap();
    let runs = seen(name);
    for (tick, scheduled_at) in &runs {
        assert_eq!(tick, scheduled_at, "{name}: a tick runs at its own instant");
    }
    runs.into_iter().map(|(tick, _)| tick).collect()
}

/// A daily 02:30 on the days clocks change, run through `TestScheduler`: a
/// time the spring change skips runs once, at the first instant after the
/// jump (03:00 local); a time the autumn change repeats runs once, at its
/// first occurrence (see `Schedule`'s docs).
#[tokio::test]
async fn a_daily_time_runs_once_on_the_days_clocks_change_in_paris_and_new_york() {
    use scheduler::chrono_tz::America::New_York;
    let daily = |expr: &str, zone| Schedule::cron(expr).unwrap().tz(zone);
    // Paris, 29 March 2026: 02:00 CET becomes 03:00 CEST.
    assert_eq!(
        three_days_of(
            "paris-spring",
            daily("30 2 * * *", Paris),
            "2026-03-28T00:00:00Z"
        )
        .await,
        [
            at("2026-03-28T01:30:00Z"), // 02:30 CET
            at("2026-03-29T01:00:00Z"), // 03:00 CEST: 02:30 does not exist
            at("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
    // Paris, 25 October 2026: 03:00 CEST becomes 02:00 CET, 02:30 happens twice.
    assert_eq!(
        three_days_of(
            "paris-autumn",
            daily("30 2 * * *", Paris),
            "2026-10-24T00:00:00Z"
        )
        .await,
        [
            at("2026-10-24T00:30:00Z"), // 02:30 CEST
            at("2026-10-25T00:30:00Z"), // the first 02:30 (CEST), not the second (01:30Z)
            at("2026-10-26T01:30:00Z"), // 02:30 CET
        ]
    );
    // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT.
    assert_eq!(
        three_days_of(
            "ny-spring",
            daily("30 2 * * *", New_York),
            "2026-03-07T12:00:00Z"
        )
        .await,
        [
            at("2026-03-08T07:00:00Z"), // 03:00 EDT: 02:30 does not exist
            at("2026-03-09T06:30:00Z"), // 02:30 EDT
            at("2026-03-10T06:30:00Z"),
        ]
    );
    // New York, 1 November 2026: 02:00 EDT becomes 01:00 EST, 01:30 happens twice.
    assert_eq!(
        three_days_of(
            "ny-autumn",
            daily("30 1 * * *", New_York),
            "2026-10-31T12:00:00Z"
        )
        .await,
        [
            at("2026-11-01T05:30:00Z"), // the first 01:30 (EDT), not the second (06:30Z)
            at("2026-11-02T06:30:00Z"), // 01:30 EST
            at("2026-11-03T06:30:00Z"),
        ]
    );
}

async fn schedules_survive_a_restart_of_the_process(fx: Fixture) {
    let ns = namespace("restart");
    let first = producer(&fx.url(), &ns).await;
    first
        .schedule("kept", probe_request("k"), yearly())
        .await
        .unwrap();
    let ticks = pending_ticks(&first, "kept").await;
    first.close().await;
    // A new process on the same store sees the schedule and its tick.
    let probe = Probe::default();
    let second = worker(&fx.url(), &ns, &probe).await;
    assert_eq!(second.schedules().await.unwrap()[0].name, "kept");
    assert_eq!(pending_ticks(&second, "kept").await, ticks);
    assert!(wait_until(Duration::from_millis(200), || probe.runs().is_empty()).await);
    wait_status(&second, &ticks[0], |s| {
        matches!(s, JobStatus::Deferred { .. })
    })
    .await;
    second.close().await;
}

/// A planner that read the schedule, computed its step and was delayed
/// until the tick it plans had run: its step finds the cursor moved and
/// creates nothing, although the tick's id is free again.
async fn a_stale_planning_step_changes_nothing_even_after_its_tick_ran(fx: Fixture) {
    use scheduler::__private::{planning_step, send_planning_step};
    let ns = namespace("stale");
    let p = producer(&fx.url(), &ns).await;
    let every_second = Schedule::every(Duration::from_secs(1)).unwrap();
    p.schedule("beat", probe_request("b"), every_second)
        .await
        .unwrap();
    // At the first tick, a planner computes the step that creates the next.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let step = loop {
        if let Some(step) = planning_step(&p, "beat").await.unwrap() {
            break step;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first tick never came due"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let [next] = step.ticks()[..] else {
        panic!("one tick expected: {:?}", step.ticks());
    };
    assert_eq!(
        send_planning_step(&p, &step).await.unwrap(),
        "Planned { created: 1, cancelled: 0 }"
    );
    // A worker runs that tick; its id is free once it finished.
    let probe = Probe::default();
    let w = worker(&fx.url(), &ns, &probe).await;
    let id = format!("schedule:beat:{next}");
    let done = wait_status(&p, &id, |s| *s == JobStatus::Completed).await;
    assert_eq!(done, JobStatus::Completed);
    w.close().await;
    // The same step, sent late: nothing is created, the tick does not run again.
    assert_eq!(send_planning_step(&p, &step).await.unwrap(), "CursorMoved");
    assert_eq!(p.status(&id).await.unwrap(), JobStatus::Completed);
    let runs = probe.runs().iter().filter(|r| r.job_id == id).count();
    assert_eq!(runs, 1);
    p.close().await;
}

/// The tick instants of schedule `name` that ran, each with its run count.
fn runs_of(probe: &Probe, name: &str) -> BTreeMap<i64, usize> {
    let prefix = format!("schedule:{name}:");
    let mut runs = BTreeMap::new();
    for run in probe.runs() {
        if run.job_id.starts_with(&prefix) {
            *runs.entry(tick_of(&run.job_id).unwrap()).or_default() += 1;
        }
    }
    runs
}

/// Waits (8 s at most) until `count` ticks of `name` ran, and checks that
/// they are consecutive seconds, each run once. A worker that learnt of the
/// schedule only at its next idle pass, `max_idle` = 5 s later, found the
/// second tick past its 1 s grace and skipped the next four.
async fn assert_consecutive_ticks_ran(probe: &Probe, name: &str, count: usize) {
    let enough = wait_until(Duration::from_secs(8), || {
        runs_of(probe, name).len() >= count
    })
    .await;
    let runs = runs_of(probe, name);
    assert!(enough, "too few ticks ran: {runs:?}");
    let first = *runs.keys().next().unwrap();
    let want: Vec<i64> = (0..count as i64).map(|k| first + k * 1_000).collect();
    let ran: Vec<i64> = runs.keys().copied().take(count).collect();
    assert_eq!(ran, want, "ticks lost after the first: {runs:?}");
    assert!(runs.values().all(|n| *n == 1), "a tick ran twice: {runs:?}");
}

/// A worker that is already running learns of a schedule another process
/// (producer-only) defines, in time to plan its second tick.
async fn a_running_worker_plans_every_tick_of_a_schedule_another_process_defined(fx: Fixture) {
    let ns = namespace("learn");
    let probe = Probe::default();
    let w = worker(&fx.url(), &ns, &probe).await;
    // Its planner's start-up passes are over: it idles, knowing no schedule.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let p = producer(&fx.url(), &ns).await;
    let every_second = Schedule::every(Duration::from_secs(1)).unwrap();
    p.schedule("beat", probe_request("b"), every_second)
        .await
        .unwrap();
    assert_consecutive_ticks_ran(&probe, "beat", 5).await;
    p.close().await;
    w.close().await;
}

/// The same after a resume from another process: the running worker, which
/// saw the schedule paused, plans its ticks again from the first one on.
async fn a_running_worker_plans_every_tick_after_another_process_resumes(fx: Fixture) {
    let ns = namespace("resume");
    let p = producer(&fx.url(), &ns).await;
    let every_second = Schedule::every(Duration::from_secs(1)).unwrap();
    p.schedule("beat", probe_request("b"), every_second)
        .await
        .unwrap();
    p.pause_schedule("beat").await.unwrap();
    let probe = Probe::default();
    let w = worker(&fx.url(), &ns, &probe).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.resume_schedule("beat").await.unwrap();
    assert_consecutive_ticks_ran(&probe, "beat", 5).await;
    p.close().await;
    w.close().await;
}

/// A worker whose one slot is taken when a new schedule's first ticks come
/// due still plans each next tick at its instant (it learns of the schedule
/// when it is stored, not when it gets round to running a tick): the ticks
/// run late, once the slot frees, but none is lost.
async fn a_busy_worker_plans_each_tick_of_a_new_schedule_on_time(fx: Fixture) {
    let ns = namespace("busy");
    let probe = Probe::default();
    let config = scheduler::WorkerConfig {
        concurrency: 1,
        ..fast_worker()
    };
    let w = worker_with(&fx.url(), &ns, &probe, config).await;
    let p = producer(&fx.url(), &ns).await;
    p.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("busy").sleep(3_000)).id("busy"))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(2), || !probe.runs().is_empty()).await);
    let every_second = Schedule::every(Duration::from_secs(1)).unwrap();
    p.schedule("beat", probe_request("b"), every_second)
        .await
        .unwrap();
    assert_consecutive_ticks_ran(&probe, "beat", 4).await;
    p.close().await;
    w.close().await;
}
