//! `Scheduler::events` and `JobContext::progress`: each change of each job
//! reaches an open stream, in order, from any process; nothing is published
//! while no stream is open; a reconnect is reported as `EventsMissed` and the
//! stream goes on.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use scheduler::{
    EnqueueOutcome, EventsMissed, IfRunning, JobEvent, JobEventKind, JobEvents, JobRequest,
    JobStatus,
};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::setup::{fast_worker, producer, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{conformance, namespace, Fixture, Probe, RedisServer};
use serde_json::json;

const LONG: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

/// Whether the event ends its job.
fn ends(event: &JobEvent) -> bool {
    matches!(
        event.kind,
        JobEventKind::Completed | JobEventKind::Failed { .. } | JobEventKind::Cancelled { .. }
    )
}

/// Reads events until each of `ids` has ended (`LONG` at most): the events
/// of each id, in the order they arrived.
async fn until_ended(events: &mut JobEvents, ids: &[&str]) -> BTreeMap<String, Vec<JobEvent>> {
    let mut open: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut seen: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + LONG;
    while !open.is_empty() {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("jobs {open:?} did not end; seen {seen:#?}"))
            .expect("the stream stays open")
            .expect("no event is missed");
        if ends(&event) {
            open.remove(&event.job_id);
        }
        seen.entry(event.job_id.clone()).or_default().push(event);
    }
    seen
}

/// The generation of a job the enqueue created.
fn generation(outcome: &EnqueueOutcome) -> u64 {
    match outcome {
        EnqueueOutcome::Enqueued { generation, .. } => *generation,
        other => panic!("not created: {other:?}"),
    }
}

/// The kinds' names, for comparing sequences.
fn names(events: &[JobEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e.kind {
            JobEventKind::Enqueued { .. } => "enqueued",
            JobEventKind::Started { .. } => "started",
            JobEventKind::Rescheduled { .. } => "rescheduled",
            JobEventKind::Progress(_) => "progress",
            JobEventKind::Retried { .. } => "retried",
            JobEventKind::Released { .. } => "released",
            JobEventKind::Completed => "completed",
            JobEventKind::Failed { .. } => "failed",
            JobEventKind::Cancelled { .. } => "cancelled",
            JobEventKind::DeadLettered { .. } => "dead_lettered",
            _ => "other",
        })
        .collect()
}

conformance!(
    every_change_of_every_job_reaches_the_stream,
    progress_shows_in_info_while_the_job_runs
);

async fn every_change_of_every_job_reaches_the_stream(fx: Fixture) {
    let ns = namespace("events");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    // The stream is read through another handle, as another process would.
    let watcher = producer(&fx.url(), &ns).await;
    let mut events = watcher.events().await.unwrap();

    let ok = watcher
        .enqueue(job("ok", ProbeArgs::new("ab")))
        .await
        .unwrap();
    watcher
        .enqueue(job("flaky", ProbeArgs::new("x").fail(1)))
        .await
        .unwrap();
    watcher
        .enqueue(job("doomed", ProbeArgs::new("x").mode("permanent")))
        .await
        .unwrap();
    watcher
        .enqueue(job(
            "steps",
            ProbeArgs::new("x").mode("progress").sleep(200),
        ))
        .await
        .unwrap();
    let first = watcher
        .enqueue(job("moved", ProbeArgs::new("x")).after(HOUR))
        .await
        .unwrap();
    watcher
        .replace(job("moved", ProbeArgs::new("abc")), IfRunning::Abort)
        .await
        .unwrap();
    watcher
        .enqueue(job("dropped", ProbeArgs::new("x")).after(HOUR))
        .await
        .unwrap();
    watcher.cancel("dropped").await.unwrap();

    let seen = until_ended(
        &mut events,
        &["ok", "flaky", "doomed", "steps", "moved", "dropped"],
    )
    .await;
    assert_eq!(names(&seen["ok"]), ["enqueued", "started", "completed"]);
    assert_eq!(
        names(&seen["flaky"]),
        ["enqueued", "started", "retried", "started", "completed"]
    );
    assert_eq!(
        names(&seen["doomed"]),
        ["enqueued", "started", "dead_lettered", "failed"]
    );
    assert_eq!(
        names(&seen["steps"]),
        ["enqueued", "started", "progress", "progress", "completed"]
    );
    assert_eq!(
        names(&seen["moved"]),
        ["enqueued", "enqueued", "started", "completed"]
    );
    assert_eq!(names(&seen["dropped"]), ["enqueued", "cancelled"]);

    // What each event says about its job.
    let ok_events = &seen["ok"];
    assert!(ok_events
        .iter()
        .all(|e| e.task == "probe" && e.generation == generation(&ok)));
    assert_eq!(
        ok_events.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [0, 1, 1]
    );
    let flaky = &seen["flaky"];
    match &flaky[2].kind {
        JobEventKind::Retried { error, run_at } => {
            assert!(error.contains("probe failure on attempt 1"), "{error}");
            assert!(*run_at >= flaky[2].at, "{run_at} before {}", flaky[2].at);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((flaky[2].attempt, flaky[3].attempt), (1, 2));
    match &seen["doomed"][2].kind {
        JobEventKind::DeadLettered { reason } => {
            assert!(reason.contains("probe asked to fail for good"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let steps: Vec<_> = seen["steps"]
        .iter()
        .filter_map(|e| match &e.kind {
            JobEventKind::Progress(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [json!({"step": 1}), json!({"step": 2})]);
    let moved = &seen["moved"];
    assert_eq!(moved[0].generation, generation(&first));
    match &moved[1].kind {
        JobEventKind::Enqueued { replaced, .. } => {
            assert_eq!(*replaced, Some(generation(&first)))
        }
        other => panic!("{other:?}"),
    }
    assert!(moved[1].generation > moved[0].generation);
    match &seen["dropped"][1].kind {
        JobEventKind::Cancelled { reason } => assert!(reason.contains("before it started")),
        other => panic!("{other:?}"),
    }
    // Events of one job arrive in the order they happened.
    for (id, list) in &seen {
        assert!(
            list.windows(2).all(|w| w[0].at <= w[1].at),
            "{id}: {list:#?}"
        );
    }

    // A batch (one script call for both, its own code path), and a dead
    // letter put back (a job created by another script).
    watcher
        .enqueue_many([
            job("bulk-1", ProbeArgs::new("x")),
            job("bulk-2", ProbeArgs::new("x")),
        ])
        .await
        .unwrap();
    assert!(watcher
        .requeue_dead_letter("doomed")
        .await
        .unwrap()
        .is_some());
    let again = until_ended(&mut events, &["bulk-1", "bulk-2", "doomed"]).await;
    assert_eq!(
        names(&again["bulk-1"]),
        ["enqueued", "started", "completed"]
    );
    assert_eq!(
        names(&again["bulk-2"]),
        ["enqueued", "started", "completed"]
    );
    assert_eq!(
        names(&again["doomed"]),
        ["enqueued", "started", "dead_lettered", "failed"]
    );
    assert!(again["doomed"][0].generation > seen["doomed"][0].generation);

    // The last progress stays with the job once it has ended.
    let info = watcher.info("steps").await.unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Completed);
    assert_eq!(info.progress, Some(json!({"step": 2})));
    assert_eq!(watcher.info("ok").await.unwrap().unwrap().progress, None);

    events.close().await;
    watcher.close().await;
    worker.close().await;
}

async fn progress_shows_in_info_while_the_job_runs(fx: Fixture) {
    let ns = namespace("progress");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    worker
        .enqueue(job(
            "slow",
            ProbeArgs::new("x").mode("progress").sleep(3000),
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let info = worker.info("slow").await.unwrap().unwrap();
        if info.progress.is_some() {
            assert!(matches!(info.status, JobStatus::Running { .. }), "{info:?}");
            assert_eq!(info.progress, Some(json!({"step": 1})));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.cancel("slow").await.unwrap();
    worker.close().await;
}

/// The job runs in a worker process; this process only reads the stream.
#[tokio::test]
async fn a_stream_in_one_process_sees_the_jobs_of_another() {
    let server = RedisServer::start();
    let ns = namespace("events-processes");
    let child_events = Events::default();
    let mut child = ChildWorker::spawn(
        env!("CARGO_BIN_EXE_probe-worker"),
        &server.url(),
        &ns,
        2000,
        600,
        2,
        &child_events,
    )
    .await;
    let watcher = producer(&server.url(), &ns).await;
    let mut events = watcher.events().await.unwrap();
    watcher
        .enqueue(job(
            "remote",
            ProbeArgs::new("abc").mode("progress").sleep(100),
        ))
        .await
        .unwrap();
    let seen = until_ended(&mut events, &["remote"]).await;
    assert_eq!(
        names(&seen["remote"]),
        ["enqueued", "started", "progress", "progress", "completed"]
    );
    // The child's report of the end reaches this process through its
    // stdout, which may come after the stream's `completed`.
    assert!(
        child_events.wait_job("end", "remote", LONG).await,
        "{:?}",
        child_events.all()
    );
    assert_eq!(child_events.count("end"), 1, "{:?}", child_events.all());
    events.close().await;
    watcher.close().await;
    child.terminate();
}

/// The scripts publish events only while a stream is registered: a plain
/// subscriber of the events channel hears nothing before `events()` is
/// called, and everything after; nothing again once the stream is closed.
#[tokio::test]
async fn nothing_is_published_while_no_stream_is_open() {
    use fred::prelude::*;

    let server = RedisServer::start();
    let ns = namespace("events-quiet");
    let probe = Probe::default();
    let worker = worker_with(&server.url(), &ns, &probe, fast_worker()).await;
    let subscriber = Builder::from_config(Config::from_url(&server.url()).unwrap())
        .build_subscriber_client()
        .unwrap();
    subscriber.init().await.unwrap();
    subscriber
        .subscribe(format!("{{{ns}}}:events"))
        .await
        .unwrap();
    let mut heard = subscriber.message_rx();
    let count_heard = |heard: &mut tokio::sync::broadcast::Receiver<fred::types::Message>| {
        let mut n = 0;
        while heard.try_recv().is_ok() {
            n += 1;
        }
        n
    };

    worker
        .enqueue(job("before", ProbeArgs::new("x")))
        .await
        .unwrap();
    assert!(worker.wait("before", LONG).await.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count_heard(&mut heard), 0, "published with no stream open");

    let mut events = worker.events().await.unwrap();
    worker
        .enqueue(job("during", ProbeArgs::new("x")))
        .await
        .unwrap();
    let seen = until_ended(&mut events, &["during"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count_heard(&mut heard), seen["during"].len());
    assert_eq!(seen["during"].len(), 3);

    events.close().await;
    worker
        .enqueue(job("after", ProbeArgs::new("x")))
        .await
        .unwrap();
    assert!(worker.wait("after", LONG).await.is_ok());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count_heard(&mut heard),
        0,
        "published after the stream closed"
    );
    let _ = subscriber.quit().await;
    worker.close().await;
}

/// Redis restarts (without persistence: the registration is gone too). The
/// stream reports `EventsMissed`, registers again, and goes on.
#[tokio::test]
async fn a_restart_is_reported_as_missed_events_and_the_stream_goes_on() {
    let mut server = RedisServer::start();
    let ns = namespace("events-restart");
    let probe = Probe::default();
    let worker = worker_with(&server.url(), &ns, &probe, fast_worker()).await;
    let mut events = worker.events().await.unwrap();
    worker
        .enqueue(job("one", ProbeArgs::new("x")))
        .await
        .unwrap();
    until_ended(&mut events, &["one"]).await;

    server.restart();
    let missed = tokio::time::timeout(LONG, events.next())
        .await
        .expect("the stream reports the reconnect")
        .expect("the stream stays open");
    assert_eq!(missed, Err(EventsMissed));

    // Well before the 20 s renewal: registered again at the reconnect.
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        match worker.enqueue(job("two", ProbeArgs::new("x"))).await {
            Ok(_) => break,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let started = std::time::Instant::now();
    let mut kinds = Vec::new();
    while !kinds.contains(&"completed") {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(event))) if event.job_id == "two" => kinds.extend(names(&[event])),
            Ok(Some(_)) => {}
            other => panic!("after {:?}: {other:?}, seen {kinds:?}", started.elapsed()),
        }
    }
    assert!(kinds.ends_with(&["started", "completed"]), "{kinds:?}");
    events.close().await;
    worker.close().await;
}
