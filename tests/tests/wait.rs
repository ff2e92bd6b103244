//! `Scheduler::wait`: it answers when the job ends (completed, failed,
//! cancelled, replaced and then completed), at once for an unknown id, with
//! `Error::Timeout` after its timeout; across processes on Redis, without
//! polling.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use scheduler::{Error, IfRunning, JobRequest, JobResult};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::setup::{fast_worker, producer, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{conformance, namespace, Fixture, Probe, RedisServer};

const LONG: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

conformance!(wait_answers_when_the_job_ends);

async fn wait_answers_when_the_job_ends(fx: Fixture) {
    let ns = namespace("wait");
    let probe = Probe::default();
    let worker = worker_with(&fx.url(), &ns, &probe, fast_worker()).await;
    // Another handle (its own connections, as another process would have).
    let waiter = producer(&fx.url(), &ns).await;

    // Completed, in 300 ms: the value decoded as the task's output.
    waiter
        .enqueue(job("soon", ProbeArgs::new("abcd")).after(Duration::from_millis(300)))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        waiter.wait_typed::<ProbeTask>("soon", LONG).await.unwrap(),
        JobResult::Completed(4)
    );
    // Answered by the job's end, not by the wait's own deadline (where it
    // looks once more before its timeout).
    assert!(started.elapsed() < LONG / 2, "{:?}", started.elapsed());
    assert_eq!(
        waiter.wait("soon", LONG).await.unwrap(),
        JobResult::Completed(serde_json::json!(4)),
        "a finished job answers at once"
    );

    // Failed for good, with its reason.
    waiter
        .enqueue(job("doomed", ProbeArgs::new("x").mode("permanent")))
        .await
        .unwrap();
    match waiter.wait("doomed", LONG).await.unwrap() {
        JobResult::Failed { reason } => assert!(!reason.is_empty()),
        other => panic!("doomed: {other:?}"),
    }

    // Cancelled by another handle while it waits.
    waiter
        .enqueue(job("cancel-me", ProbeArgs::new("x")).after(HOUR))
        .await
        .unwrap();
    let canceller = worker.clone();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        canceller.cancel("cancel-me").await.unwrap()
    });
    assert!(matches!(
        waiter.wait("cancel-me", LONG).await.unwrap(),
        JobResult::Cancelled { .. }
    ));
    cancel.await.unwrap();

    // Replaced while it waits: the replacement's outcome answers.
    waiter
        .enqueue(job("moved", ProbeArgs::new("x")).after(HOUR))
        .await
        .unwrap();
    let replacer = worker.clone();
    let replace = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        replacer
            .replace(job("moved", ProbeArgs::new("abcdef")), IfRunning::Abort)
            .await
            .unwrap()
    });
    assert_eq!(
        waiter.wait_typed::<ProbeTask>("moved", LONG).await.unwrap(),
        JobResult::Completed(6)
    );
    replace.await.unwrap();

    // Unknown at once; a timeout is a typed error.
    assert_eq!(
        waiter.wait("never-enqueued", LONG).await.unwrap(),
        JobResult::Unknown
    );
    waiter
        .enqueue(job("later", ProbeArgs::new("x")).after(HOUR))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    match waiter.wait("later", Duration::from_millis(300)).await {
        Err(Error::Timeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(300));
            assert!(started.elapsed() >= Duration::from_millis(300));
        }
        other => panic!("later: {other:?}"),
    }
    waiter.close().await;
    worker.close().await;
}

/// The job runs in a worker process; this process only waits. While it
/// waits for a job due in 3 s, Redis sees a handful of script calls (the
/// registration, a first look, the worker's own), not a poll.
#[tokio::test]
async fn a_wait_in_one_process_sees_a_job_end_in_another_without_polling() {
    let server = RedisServer::start();
    let ns = namespace("wait-processes");
    let events = Events::default();
    let mut child = ChildWorker::spawn(
        env!("CARGO_BIN_EXE_probe-worker"),
        &server.url(),
        &ns,
        2000,
        600,
        2,
        &events,
    )
    .await;
    let waiter = producer(&server.url(), &ns).await;
    waiter
        .enqueue(job("remote", ProbeArgs::new("abc").sleep(200)).after(Duration::from_secs(3)))
        .await
        .unwrap();
    // Script calls (every look at a job is one): FCALL, or EVALSHA where
    // functions are refused.
    let script_calls = || -> u64 {
        let stats = server.cli(&["INFO", "commandstats"]).unwrap_or_default();
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_fcall:") || l.starts_with("cmdstat_evalsha:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before = script_calls();
    let started = std::time::Instant::now();
    let answer = waiter
        .wait_typed::<ProbeTask>("remote", LONG)
        .await
        .unwrap();
    let during = script_calls() - before;
    assert_eq!(answer, JobResult::Completed(3));
    assert!(started.elapsed() < LONG / 2, "{:?}", started.elapsed());
    // The child's report of the end comes through its stdout, which this
    // process may read after the outcome's notice.
    assert!(
        events.wait_job("end", "remote", LONG).await,
        "{:?}",
        events.all()
    );
    assert_eq!(events.count("end"), 1, "{:?}", events.all());
    // The waiter's registration and two looks, the worker's claims, renewal
    // and outcome: about ten; a 10 ms poll would be some 300.
    assert!(during < 30, "{during} script calls while waiting 3 s");
    waiter.close().await;
    child.terminate();
}

/// An announcement that never arrives (here: the waiter's registration
/// deleted by hand, so the script that ends the job publishes nothing) costs
/// time, never a wrong answer: the wait looks once more at its deadline and
/// answers what became of the job.
#[tokio::test]
async fn a_lost_announcement_is_answered_at_the_deadline_from_one_last_look() {
    let server = RedisServer::start();
    let ns = namespace("wait-lost");
    let probe = Probe::default();
    let worker = worker_with(&server.url(), &ns, &probe, fast_worker()).await;
    let waiter = producer(&server.url(), &ns).await;
    waiter
        .enqueue(job("quiet", ProbeArgs::new("ab")).after(Duration::from_millis(500)))
        .await
        .unwrap();
    let listeners = format!("{{{ns}}}:listeners");
    let unregister = {
        let port = server.port();
        let key = listeners.clone();
        tokio::spawn(async move {
            // After the wait registered, before the job ends.
            tokio::time::sleep(Duration::from_millis(200)).await;
            scheduler_tests::redis_server::cli_at(port, &["DEL", &key])
        })
    };
    let started = std::time::Instant::now();
    let answer = waiter
        .wait_typed::<ProbeTask>("quiet", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(answer, JobResult::Completed(2));
    unregister.await.unwrap();
    // Answered at the deadline, not when the job ended (about 0.5 s in).
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    waiter.close().await;
    worker.close().await;
}

/// Redis restarts from a snapshot taken without the waiter's registration
/// (as a restart can lose the last writes): the waiter hears its subscriber
/// reconnect, registers again at once, and is answered when the job ends,
/// not at its deadline.
#[tokio::test]
async fn a_wait_registers_again_when_a_restart_lost_its_registration() {
    let mut server = RedisServer::start();
    let ns = namespace("wait-restart");
    let probe = Probe::default();
    let worker = worker_with(&server.url(), &ns, &probe, fast_worker()).await;
    let waiter = producer(&server.url(), &ns).await;
    waiter
        .enqueue(job("survivor", ProbeArgs::new("abc")).after(Duration::from_secs(3)))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let wait = {
        let waiter = waiter.clone();
        tokio::spawn(async move { waiter.wait_typed::<ProbeTask>("survivor", LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listeners = format!("{{{ns}}}:listeners");
    server.cli(&["DEL", &listeners]).unwrap();
    server.cli(&["SAVE"]).unwrap();
    server.restart();
    assert_eq!(
        server.cli(&["EXISTS", &listeners]).unwrap().trim(),
        "0",
        "restarted without the registration"
    );
    assert_eq!(wait.await.unwrap().unwrap(), JobResult::Completed(3));
    // Well before the 20 s deadline (and the first renewal, 20 s in).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    waiter.close().await;
    worker.close().await;
}
