//! Far-future jobs (issue 19's backlog): a job due more than a minute from
//! now waits in its due set's far twin (`far:<priority>:<queue>`), so that
//! the due sets every claim reads hold only what is due soon. Everything a
//! caller can do with a deferred job works the same on one that waits there,
//! and a claim moves it into its due set a minute before its time. Redis
//! only (the in-memory backend has no such sets); the keys are read with
//! redis-cli to see where each entry is.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use scheduler::{
    CancelOutcome, EnqueueOutcome, IfRunning, JobQuery, JobRequest, JobStatus, ListState,
    Scheduler, When, WorkerConfig,
};
use scheduler_tests::setup::probe_job;
use scheduler_tests::tasks::{EmailProbe, ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, Probe, RedisServer};

async fn start(url: &str, ns: &str, probe: &Probe, worker: Option<WorkerConfig>) -> Scheduler {
    let builder = Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .register::<EmailProbe>()
        .provide(probe.clone());
    scheduler_tests::setup::start_with_worker(builder, worker).await
}

/// The index that holds `id`: "due", "far:0:default", ... or "" (none),
/// with its score in microseconds. An id in two indexes fails the test.
fn index_of(server: &RedisServer, ns: &str, id: &str) -> (String, Option<i64>) {
    let keys = server
        .cli(&["--scan", "--pattern", &format!("{{{ns}}}:*")])
        .unwrap();
    let mut found = Vec::new();
    for key in keys.lines() {
        let suffix = key.split_once("}:").map(|(_, s)| s).unwrap_or_default();
        if suffix != "due" && !suffix.starts_with("due:") && !suffix.starts_with("far:") {
            continue;
        }
        let score = server.cli(&["ZSCORE", key, id]).unwrap();
        if let Ok(score) = score.trim().parse::<f64>() {
            found.push((suffix.to_string(), Some((score * 1000.0).round() as i64)));
        }
    }
    assert!(found.len() <= 1, "{id} in more than one index: {found:?}");
    found.pop().unwrap_or((String::new(), None))
}

/// A run time as its score keeps it: microseconds, rounded up (never early).
fn us_up(t: DateTime<Utc>) -> i64 {
    (t.timestamp_nanos_opt().unwrap() + 999).div_euclid(1_000)
}

/// A run time as a status reports it: its millisecond (rounded down).
fn ms_of(t: DateTime<Utc>) -> i64 {
    us_up(t).div_euclid(1000)
}

fn run_at(status: &JobStatus) -> DateTime<Utc> {
    match status {
        JobStatus::Deferred { run_at } => *run_at,
        other => panic!("not deferred: {other:?}"),
    }
}

#[tokio::test]
async fn a_far_job_waits_apart_and_is_listed_counted_moved_replaced_and_cancelled_as_any() {
    let server = RedisServer::start();
    let ns = namespace("far-ops");
    let s = start(&server.url(), &ns, &Probe::default(), None).await;
    let far = Utc::now() + TimeDelta::hours(2);
    let near = Utc::now() + TimeDelta::seconds(20);
    // One at a time (the single-job path) and in a batch, with a near one.
    s.enqueue(probe_job("far-1", "one").at(far)).await.unwrap();
    let batch = vec![
        probe_job("far-2", "two").at(far + TimeDelta::seconds(1)),
        probe_job("near-1", "three").at(near),
    ];
    for out in s.enqueue_many(batch).await.unwrap() {
        assert!(out.is_enqueued(), "{out:?}");
    }
    let email = JobRequest::<EmailProbe>::new(ProbeArgs::new("mail"))
        .id("far-mail")
        .at(far);
    s.enqueue(email).await.unwrap();
    assert_eq!(
        index_of(&server, &ns, "far-1"),
        ("far:0:default".into(), Some(us_up(far)))
    );
    assert_eq!(index_of(&server, &ns, "far-2").0, "far:0:default");
    assert_eq!(index_of(&server, &ns, "near-1").0, "due");
    assert_eq!(index_of(&server, &ns, "far-mail").0, "far:0:emails");

    // Status, info, counts, queues and listings see it as deferred.
    assert_eq!(
        run_at(&s.status("far-1").await.unwrap()).timestamp_millis(),
        ms_of(far)
    );
    let info = s.info("far-1").await.unwrap().unwrap();
    assert_eq!(info.waiting, None, "{info:?}");
    let counts = s.counts().await.unwrap();
    assert_eq!((counts.deferred, counts.queued), (4, 0));
    let queues = s.queues().await.unwrap();
    let deferred = |name: &str| queues.iter().find(|q| q.name == name).unwrap().deferred;
    assert_eq!(
        (deferred("default"), deferred("emails")),
        (3, 1),
        "{queues:?}"
    );
    let listed: Vec<String> = s
        .list(&JobQuery::new(ListState::Deferred))
        .await
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(
        listed,
        ["near-1", "far-1", "far-mail", "far-2"],
        "soonest first"
    );
    let pending: Vec<String> = s
        .pending::<ProbeTask>()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");

    // Dedup, replace (the replacement is far too), reschedule both ways.
    assert!(matches!(
        s.enqueue(probe_job("far-1", "again").at(far))
            .await
            .unwrap(),
        EnqueueOutcome::Duplicate { .. }
    ));
    s.replace(probe_job("far-1", "replaced").at(far), IfRunning::Abort)
        .await
        .unwrap();
    assert_eq!(index_of(&server, &ns, "far-1").0, "far:0:default");
    s.reschedule("far-2", When::At(near)).await.unwrap();
    assert_eq!(
        index_of(&server, &ns, "far-2"),
        ("due".into(), Some(us_up(near)))
    );
    s.reschedule("near-1", When::At(far)).await.unwrap();
    assert_eq!(
        index_of(&server, &ns, "near-1"),
        ("far:0:default".into(), Some(us_up(far)))
    );
    assert_eq!(
        run_at(&s.status("near-1").await.unwrap()).timestamp_millis(),
        ms_of(far)
    );

    // Cancel takes it out of the far twin.
    assert!(matches!(
        s.cancel("far-1").await.unwrap(),
        CancelOutcome::Removed { .. }
    ));
    assert_eq!(index_of(&server, &ns, "far-1"), (String::new(), None));
    assert_eq!(s.status("far-1").await.unwrap(), JobStatus::Cancelled);
    assert_eq!(s.counts().await.unwrap().deferred, 3);
    s.close().await;
}

/// A worker plans to claim a minute before the earliest far job (here in
/// about a second, well before its 30 s `max_idle`), and that claim moves it
/// into its due set; jobs overdue in a far twin (no worker ran while their
/// time came) are moved and run at the next claim. An audit finds nothing
/// to repair.
#[tokio::test]
async fn a_claim_moves_far_jobs_into_their_due_set_a_minute_before_their_time() {
    let server = RedisServer::start();
    let ns = namespace("far-claim");
    let probe = Probe::default();
    let producer = start(&server.url(), &ns, &probe, None).await;
    let soon_far = Utc::now() + TimeDelta::milliseconds(61_500);
    producer
        .enqueue(probe_job("in-61s", "x").at(soon_far))
        .await
        .unwrap();
    producer
        .enqueue(probe_job("overdue", "y").at(Utc::now() + TimeDelta::hours(3)))
        .await
        .unwrap();
    assert_eq!(index_of(&server, &ns, "in-61s").0, "far:0:default");
    // As if its time had come with no worker running.
    let past = (Utc::now() - TimeDelta::seconds(5)).timestamp_millis();
    server
        .cli(&[
            "ZADD",
            &format!("{{{ns}}}:far:0:default"),
            &past.to_string(),
            "overdue",
        ])
        .unwrap();
    let worker = start(
        &server.url(),
        &ns,
        &probe,
        Some(WorkerConfig {
            max_idle: Duration::from_secs(30),
            audit_interval: Duration::from_millis(300),
            ..WorkerConfig::default()
        }),
    )
    .await;
    assert!(probe.wait_finished(1, Duration::from_secs(5)).await);
    assert_eq!(probe.runs()[0].job_id, "overdue");
    let moved = scheduler_tests::wait_until(Duration::from_secs(5), || {
        index_of(&server, &ns, "in-61s").0 == "due"
    })
    .await;
    assert!(moved, "{:?}", index_of(&server, &ns, "in-61s"));
    assert_eq!(
        index_of(&server, &ns, "in-61s").1,
        Some(us_up(soon_far)),
        "moved with its run time"
    );
    assert!(matches!(
        producer.status("in-61s").await.unwrap(),
        JobStatus::Deferred { .. }
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(worker.health().is_healthy(), "{:?}", worker.health());
    assert_eq!(probe.runs().len(), 1);
    worker.close().await;
    producer.close().await;
}

/// The roll-back step of docs/operations.md: the twin's entries merged into
/// `due` (where an older version looks) leave every job where it was, with
/// its run time, and nothing else changes.
#[tokio::test]
async fn merging_a_twin_into_due_for_a_roll_back_keeps_every_job() {
    let server = RedisServer::start();
    let ns = namespace("far-rollback");
    let s = start(&server.url(), &ns, &Probe::default(), None).await;
    let far = Utc::now() + TimeDelta::hours(5);
    let near = Utc::now() + TimeDelta::seconds(20);
    s.enqueue(probe_job("far", "x").at(far)).await.unwrap();
    s.enqueue(probe_job("near", "y").at(near)).await.unwrap();
    let before = s.counts().await.unwrap();
    let (due, twin) = (format!("{{{ns}}}:due"), format!("{{{ns}}}:far:0:default"));
    server
        .cli(&["ZUNIONSTORE", &due, "2", &due, &twin, "AGGREGATE", "MIN"])
        .unwrap();
    server.cli(&["DEL", &twin]).unwrap();
    assert_eq!(
        index_of(&server, &ns, "far"),
        ("due".into(), Some(us_up(far)))
    );
    assert_eq!(
        index_of(&server, &ns, "near"),
        ("due".into(), Some(us_up(near)))
    );
    assert_eq!(s.counts().await.unwrap(), before);
    assert_eq!(
        run_at(&s.status("far").await.unwrap()).timestamp_millis(),
        ms_of(far)
    );
    s.close().await;
}
