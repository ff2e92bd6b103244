//! `scheduler::testing`: a manual clock that fires exactly the jobs due.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use scheduler::testing::TestScheduler;
use scheduler::{JobRequest, JobStatus, WorkerConfig};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::Probe;

fn nine_am() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

async fn harness(probe: &Probe) -> TestScheduler {
    TestScheduler::builder()
        .start_at(nine_am() - TimeDelta::hours(1))
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(10),
            ..WorkerConfig::default()
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn advance_fires_exactly_the_jobs_due_and_in_time_order() {
    let probe = Probe::default();
    let test = harness(&probe).await;
    for (id, minutes) in [("c", 30), ("a", 10), ("b", 20), ("later", 120)] {
        let at = test.now() + TimeDelta::minutes(minutes);
        test.enqueue(
            JobRequest::<ProbeTask>::new(ProbeArgs::new(id))
                .id(id)
                .at(at),
        )
        .await
        .unwrap();
    }
    assert_eq!(test.advance(Duration::from_secs(9 * 60)).await.unwrap(), 0);
    assert_eq!(probe.started(), 0);
    assert_eq!(test.advance(Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(test.advance(Duration::from_secs(30 * 60)).await.unwrap(), 2);
    let order: Vec<String> = probe.runs().into_iter().map(|r| r.arg).collect();
    assert_eq!(order, vec!["a", "b", "c"]);
    // Each ran at its own time on the manual clock, not at the end of the step.
    for run in probe.runs() {
        assert_eq!(
            run.scheduled_at,
            match run.arg.as_str() {
                "a" => nine_am() - TimeDelta::minutes(50),
                "b" => nine_am() - TimeDelta::minutes(40),
                _ => nine_am() - TimeDelta::minutes(30),
            }
        );
    }
    assert!(matches!(
        test.status("later").await.unwrap(),
        JobStatus::Deferred { .. }
    ));
    assert_eq!(test.now(), nine_am() - TimeDelta::minutes(20));
}

#[tokio::test]
async fn a_test_can_assert_what_is_planned_with_typed_arguments() {
    let probe = Probe::default();
    let test = harness(&probe).await;
    test.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("user-42"))
            .id("reminder-42")
            .at(nine_am()),
    )
    .await
    .unwrap();
    let planned = test.pending::<ProbeTask>().await.unwrap();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].job_id, "reminder-42");
    assert_eq!(planned[0].run_at, nine_am());
    assert_eq!(planned[0].args.arg, "user-42");
    test.advance_to(nine_am()).await.unwrap();
    assert_eq!(probe.runs_of("reminder-42").len(), 1);
    assert!(test.pending::<ProbeTask>().await.unwrap().is_empty());
}

#[tokio::test]
async fn retries_wait_for_their_backoff_on_the_manual_clock() {
    let probe = Probe::default();
    let test = harness(&probe).await;
    test.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("flaky").fail(1)).id("flaky"))
        .await
        .unwrap();
    // The probe asks for a 50 ms retry delay.
    assert_eq!(test.run_until_idle().await.unwrap(), 1);
    assert!(matches!(
        test.status("flaky").await.unwrap(),
        JobStatus::Deferred { .. }
    ));
    assert_eq!(test.advance(Duration::from_millis(49)).await.unwrap(), 0);
    assert_eq!(test.advance(Duration::from_millis(1)).await.unwrap(), 1);
    assert_eq!(test.status("flaky").await.unwrap(), JobStatus::Completed);
    assert_eq!(
        test.result::<ProbeTask>("flaky").await.unwrap(),
        scheduler::JobResult::Completed(5)
    );
}

#[tokio::test]
async fn cancel_and_replace_work_on_the_harness() {
    let probe = Probe::default();
    let test = harness(&probe).await;
    let at = test.now() + TimeDelta::minutes(5);
    test.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("x"))
            .id("gone")
            .at(at),
    )
    .await
    .unwrap();
    test.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("old"))
            .id("moved")
            .at(at),
    )
    .await
    .unwrap();
    test.cancel("gone").await.unwrap();
    test.replace(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("new"))
            .id("moved")
            .at(at + TimeDelta::minutes(5)),
        scheduler::IfRunning::Abort,
    )
    .await
    .unwrap();
    assert_eq!(test.advance(Duration::from_secs(5 * 60)).await.unwrap(), 0);
    assert_eq!(test.advance(Duration::from_secs(5 * 60)).await.unwrap(), 1);
    assert_eq!(probe.runs()[0].arg, "new");
    assert_eq!(test.status("gone").await.unwrap(), JobStatus::Cancelled);
}

#[tokio::test]
async fn a_dependency_can_be_overridden_with_a_fake() {
    let real = Probe::default();
    let fake = Probe::default();
    let test = TestScheduler::builder()
        .register::<ProbeTask>()
        .provide(real.clone())
        .provide(fake.clone()) // the later one wins, as dependency_overrides do
        .start()
        .await
        .unwrap();
    test.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x")).id("x"))
        .await
        .unwrap();
    test.run_until_idle().await.unwrap();
    assert_eq!(real.started(), 0);
    assert_eq!(fake.started(), 1);
    // And at run time, through the handle.
    let other = Probe::default();
    test.dependencies().insert(other.clone());
    test.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("y")).id("y"))
        .await
        .unwrap();
    test.run_until_idle().await.unwrap();
    assert_eq!(other.started(), 1);
}
