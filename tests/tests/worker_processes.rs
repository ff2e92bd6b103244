//! Worker processes killed or frozen mid-job: leases, re-runs and fencing.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use scheduler::{JobRequest, JobStatus, Scheduler};
use scheduler_tests::child::{ChildWorker, Event, Events};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");
const LEASE_MS: u64 = 1000;
const HEARTBEAT_MS: u64 = 300;

async fn producer(server: &RedisServer, ns: &str) -> Scheduler {
    Scheduler::builder(server.url())
        .namespace(ns)
        .producer_only()
        .start()
        .await
        .unwrap()
}

/// (job, pid) -> (start, end) in microseconds.
fn runs(events: &[Event]) -> Vec<(String, u32, i64, Option<i64>)> {
    let mut open: HashMap<(String, u32, u32), i64> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let key = (e.job_id.clone(), e.pid, e.attempt);
        match e.event.as_str() {
            "start" => {
                open.insert(key, e.t);
            }
            "end" => {
                if let Some(start) = open.remove(&key) {
                    out.push((e.job_id.clone(), e.pid, start, Some(e.t)));
                }
            }
            _ => {}
        }
    }
    out.extend(
        open.into_iter()
            .map(|((job, pid, _), start)| (job, pid, start, None)),
    );
    out
}

#[tokio::test]
async fn a_killed_workers_jobs_rerun_on_another_worker_within_the_lease() {
    let server = RedisServer::start();
    let ns = namespace("kill");
    let events = Events::default();
    let mut a =
        ChildWorker::spawn(BIN, &server.url(), &ns, LEASE_MS, HEARTBEAT_MS, 5, &events).await;
    let p = producer(&server, &ns).await;
    let jobs = (0..10)
        .map(|i| JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(1500)).id(format!("k{i}")));
    p.enqueue_many(jobs).await.unwrap();
    assert!(events.wait("start", 5, Duration::from_secs(10)).await);
    let b = ChildWorker::spawn(BIN, &server.url(), &ns, LEASE_MS, HEARTBEAT_MS, 10, &events).await;
    let killed_pid = a.pid();
    a.kill();
    let killed_at = chrono::Utc::now().timestamp_micros();
    assert!(
        events.wait("end", 10, Duration::from_secs(20)).await,
        "{:?}",
        events.all()
    );
    let all = events.all();
    let mut ends: HashMap<String, usize> = HashMap::new();
    for e in all.iter().filter(|e| e.event == "end") {
        *ends.entry(e.job_id.clone()).or_default() += 1;
    }
    assert_eq!(ends.len(), 10, "every job completed");
    assert!(
        ends.values().all(|n| *n == 1),
        "a job completed twice: {ends:?}"
    );
    let runs = runs(&all);
    let orphaned: Vec<&String> = runs
        .iter()
        .filter(|r| r.1 == killed_pid && r.3.is_none())
        .map(|r| &r.0)
        .collect();
    assert!(!orphaned.is_empty(), "the kill happened mid-job");
    for job in orphaned {
        let rerun = runs
            .iter()
            .find(|r| &r.0 == job && r.1 == b.pid())
            .expect("re-run on the live worker");
        let delay_ms = (rerun.2 - killed_at) / 1000;
        assert!(
            delay_ms <= (LEASE_MS + 1500) as i64,
            "{job} re-ran {delay_ms} ms after the kill"
        );
    }
    // No job ran on two live workers at overlapping times.
    for x in &runs {
        for y in &runs {
            if x.0 == y.0 && x.1 != y.1 {
                if let (Some(xe), Some(ye)) = (x.3, y.3) {
                    assert!(
                        xe <= y.2 || ye <= x.2,
                        "overlapping runs of {}: {x:?} {y:?}",
                        x.0
                    );
                }
            }
        }
    }
    p.close().await;
}

async fn crate_wait_start_on(events: &Events, pid: u32) -> bool {
    events.wait_pid("start", pid, Duration::from_secs(10)).await
}

/// A job of `sleep_ms` starts on worker A, A is paused (SIGSTOP) right away,
/// and worker B starts it again once A's lease has expired (attempt 2).
/// Returns the server, the events, A (paused), B and a producer.
async fn paused_mid_job(
    ns: &str,
    id: &str,
    sleep_ms: u64,
) -> (RedisServer, Events, ChildWorker, ChildWorker, Scheduler) {
    let server = RedisServer::start();
    let events = Events::default();
    let a = ChildWorker::spawn(BIN, &server.url(), ns, LEASE_MS, HEARTBEAT_MS, 5, &events).await;
    let p = producer(&server, ns).await;
    p.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new(id).sleep(sleep_ms)).id(id))
        .await
        .unwrap();
    assert!(crate_wait_start_on(&events, a.pid()).await);
    a.pause();
    let b = ChildWorker::spawn(BIN, &server.url(), ns, LEASE_MS, HEARTBEAT_MS, 5, &events).await;
    assert!(
        crate_wait_start_on(&events, b.pid()).await,
        "{:?}",
        events.all()
    );
    (server, events, a, b, p)
}

/// The `end` events of one worker process.
fn ends_on(events: &Events, pid: u32) -> Vec<scheduler_tests::child::Event> {
    events
        .all()
        .into_iter()
        .filter(|e| e.event == "end" && e.pid == pid)
        .collect()
}

#[tokio::test]
async fn a_frozen_workers_late_completion_is_rejected() {
    // B takes the job over once A's lease has expired (attempt 2)...
    let (_server, events, a, b, p) = paused_mid_job(&namespace("zombie"), "z", 1200).await;
    // ...then A wakes up with its attempt overdue. Its task's sleep is over
    // too, but the task is never polled past the lease's validity: A drops
    // it without running another line of it, whichever of the woken task and
    // the watchdog the runtime polls first.
    a.resume();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let a_ended = ends_on(&events, a.pid());
    assert!(
        a_ended.is_empty(),
        "A ran its job on after its lease's validity: {a_ended:?}"
    );
    let during = p.info("z").await.unwrap().unwrap();
    assert!(
        matches!(during.status, JobStatus::Running { attempt: 2, .. }),
        "A's stale outcome changed the job B is running: {during:?}"
    );
    assert!(
        events
            .wait_pid("end", b.pid(), Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = p.info("z").await.unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Completed);
    assert_eq!(info.attempts, 2, "the outcome recorded is B's attempt");
    p.close().await;
}

/// A worker paused (SIGSTOP) mid-job past its lease, whose job's own timer
/// ran out during the pause, wakes with the job's task due before its
/// watchdog: the runtime polls the task first. The task is still never polled
/// past its lease's validity, so it does not run on while the job's new
/// owner runs it.
#[tokio::test]
async fn a_resumed_worker_never_polls_a_job_past_its_lease() {
    let (_server, events, a, b, p) = paused_mid_job(&namespace("resumed"), "r", 600).await;
    a.resume();
    assert!(
        events
            .wait_pid("end", b.pid(), Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_ended = ends_on(&events, a.pid());
    assert!(
        a_ended.is_empty(),
        "A ran its job on after its lease's validity: {a_ended:?}"
    );
    let info = wait_completed(&p, "r").await;
    assert_eq!(info.attempts, 2, "{info:?}");
    p.close().await;
}

#[tokio::test]
async fn a_completion_after_the_lease_was_taken_over_is_fenced_off() {
    let server = RedisServer::start();
    let ns = namespace("fenced");
    let events = Events::default();
    let a = ChildWorker::spawn(BIN, &server.url(), &ns, LEASE_MS, HEARTBEAT_MS, 5, &events).await;
    let p = producer(&server, &ns).await;
    // Blocks A's whole runtime (no heartbeat) for 2.5 leases, then returns Ok.
    p.enqueue(
        JobRequest::<ProbeTask>::new(ProbeArgs::new("f").mode("block-first").sleep(2500)).id("f"),
    )
    .await
    .unwrap();
    assert!(
        events
            .wait_pid("start", a.pid(), Duration::from_secs(10))
            .await
    );
    let b = ChildWorker::spawn(BIN, &server.url(), &ns, LEASE_MS, HEARTBEAT_MS, 5, &events).await;
    // B takes over after the lease (its attempt sleeps 2.5 s without blocking); A finishes meanwhile.
    assert!(
        events
            .wait_pid("start", b.pid(), Duration::from_secs(10))
            .await
    );
    assert!(
        events
            .wait_pid("end", a.pid(), Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = p.info("f").await.unwrap().unwrap();
    assert!(
        matches!(during.status, JobStatus::Running { attempt: 2, .. }),
        "A's completion of attempt 1 was accepted while B runs attempt 2: {during:?}"
    );
    assert!(
        events
            .wait_pid("end", b.pid(), Duration::from_secs(10))
            .await
    );
    let info = wait_completed(&p, "f").await;
    assert_eq!(info.attempts, 2);
    p.close().await;
}

async fn wait_completed(p: &Scheduler, id: &str) -> scheduler::JobInfo {
    for _ in 0..200 {
        let info = p.info(id).await.unwrap().unwrap();
        if info.status == JobStatus::Completed {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} did not complete");
}
