//! State that lost half of itself: a job record without its index entry, or
//! an index entry without its record, as `maxmemory-policy allkeys-lru`
//! leaves it when it evicts one key of a namespace (it evicts whole keys:
//! the `due` index, the `pending` records, ...) or as a hand edit does. The
//! worker's audit must find it, dead-letter or repair it with a reason, and
//! report it through `health()`: nothing stays stranded silently.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::{Health, JobRequest, JobStatus, Scheduler, WorkerConfig};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::setup::wait_status;
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, wait_until, Probe, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");

/// A 1 s lease and an audit every 200 ms.
fn auditing_worker() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(1000),
        heartbeat: Some(Duration::from_millis(300)),
        audit_interval: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

async fn worker(url: &str, ns: &str, probe: &Probe) -> Scheduler {
    scheduler_tests::init_tracing();
    Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(auditing_worker())
        .start()
        .await
        .unwrap()
}

fn later(id: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new(id))
        .id(id)
        .at(Utc::now() + TimeDelta::hours(1))
}

/// Due in 30 s: its entry is in `due` itself (jobs due more than a minute
/// from now wait in its far twin, `far:0:default`).
fn soon(id: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new(id))
        .id(id)
        .at(Utc::now() + TimeDelta::seconds(30))
}

async fn dead_reason(s: &Scheduler, id: &str) -> Option<String> {
    s.dead_letters(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.job_id == id)
        .map(|d| d.reason)
}

async fn wait_dead(s: &Scheduler, id: &str) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if let Some(reason) = dead_reason(s, id).await {
            return Some(reason);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn degraded_reason(s: &Scheduler) -> Option<String> {
    match s.health() {
        Health::Degraded { reason, .. } => Some(reason),
        Health::Healthy => None,
    }
}

/// The indexes of deferred jobs (`due` and its far twin) evicted whole:
/// every deferred job's record is left without a run time. Each is
/// dead-lettered with the reason (running it without its time could start
/// it early), `pending()` no longer lists a job that would never run, and
/// health says what happened.
#[tokio::test]
async fn records_whose_due_index_was_evicted_are_dead_lettered_and_reported() {
    let server = RedisServer::start();
    let ns = namespace("evict-due");
    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    for id in ["a", "b"] {
        assert!(s.enqueue(later(id)).await.unwrap().is_enqueued());
    }
    assert!(s.enqueue(soon("c")).await.unwrap().is_enqueued());
    assert_eq!(s.pending::<ProbeTask>().await.unwrap().len(), 3);
    assert!(s.health().is_healthy());
    server
        .cli(&[
            "DEL",
            &format!("{{{ns}}}:due"),
            &format!("{{{ns}}}:far:0:default"),
        ])
        .unwrap();

    for id in ["a", "b", "c"] {
        let reason = wait_dead(&s, id).await;
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("due-time entry is missing")),
            "job {id}: {reason:?}"
        );
        assert_eq!(s.status(id).await.unwrap(), JobStatus::Failed);
    }
    assert!(s.pending::<ProbeTask>().await.unwrap().is_empty());
    let health = degraded_reason(&s);
    assert!(
        health
            .as_deref()
            .is_some_and(|r| r.contains("3 job(s) repaired") && r.contains("due-time entry")),
        "{health:?}"
    );
    assert_eq!(probe.started(), 0);
    s.close().await;
}

/// The `pending` records evicted whole: the indexes still list jobs due in
/// 30 s and in an hour. They are dead-lettered now, not when they come due.
#[tokio::test]
async fn index_entries_whose_records_were_evicted_are_dead_lettered_at_once() {
    let server = RedisServer::start();
    let ns = namespace("evict-pending");
    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    assert!(s.enqueue(later("a")).await.unwrap().is_enqueued());
    assert!(s.enqueue(soon("b")).await.unwrap().is_enqueued());
    server.cli(&["DEL", &format!("{{{ns}}}:pending")]).unwrap();
    for id in ["a", "b"] {
        let reason = wait_dead(&s, id).await;
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("record is missing")),
            "job {id}: {reason:?}"
        );
    }
    for index in ["due", "far:0:default"] {
        let zcard = server
            .cli(&["ZCARD", &format!("{{{ns}}}:{index}")])
            .unwrap();
        assert_eq!(zcard.trim(), "0", "{index}");
    }
    assert!(degraded_reason(&s).is_some_and(|r| r.contains("2 job(s) repaired")));
    s.close().await;
}

/// What eviction (or a hand edit) can take of a running job's lease.
#[derive(Clone, Copy, Debug)]
enum LeaseLoss {
    /// The set of the ids its worker runs (`held:<worker>`).
    WorkersSet,
    /// The workers' leases (`worker_leases`).
    WorkerLeases,
    /// The job's own lease entry in `leases` (a job claimed by an older
    /// version, which kept one per job, or one its worker gave up).
    OwnLease,
    /// Nothing: the job has a lease of its own, as an older version leaves
    /// a job it claimed, and that lease has run out.
    Nothing,
}

/// A running job whose lease entry was evicted, and whose worker then died:
/// nothing would ever expire it. The audit gives it a lease, which runs out,
/// and the job runs again on the live worker as its next attempt. (With
/// nothing evicted, a job with a lease of its own runs again when that
/// lease has run out, without the audit.)
async fn a_running_job_that_lost_its_lease_is_rerun_after_its_worker_dies(loss: LeaseLoss) {
    let server = RedisServer::start();
    let ns = namespace("evict-lease");
    let events = Events::default();
    let mut dying = ChildWorker::spawn(BIN, &server.url(), &ns, 1000, 300, 1, &events).await;
    let producer = Scheduler::builder(server.url())
        .namespace(&ns)
        .producer_only()
        .start()
        .await
        .unwrap();
    producer
        .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(300)).id("r"))
        .await
        .unwrap();
    assert!(
        events
            .wait_pid("start", dying.pid(), Duration::from_secs(10))
            .await
    );
    dying.kill();
    let held = server
        .cli(&["--scan", "--pattern", &format!("{{{ns}}}:held:*")])
        .unwrap();
    let held = held.trim();
    assert!(!held.is_empty(), "the job is in no worker's set");
    match loss {
        LeaseLoss::WorkersSet => {
            server.cli(&["DEL", held]).unwrap();
        }
        LeaseLoss::WorkerLeases => {
            server
                .cli(&["DEL", &format!("{{{ns}}}:worker_leases")])
                .unwrap();
        }
        LeaseLoss::OwnLease => {
            // As an older version leaves a job it claimed (a lease of its
            // own, and none of its worker's), then that entry is evicted.
            server.cli(&["SREM", held, "r"]).unwrap();
        }
        LeaseLoss::Nothing => {
            server.cli(&["SREM", held, "r"]).unwrap();
            server
                .cli(&["ZADD", &format!("{{{ns}}}:leases"), "1", "r"])
                .unwrap();
        }
    }

    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    assert!(
        wait_until(Duration::from_secs(10), || probe.finished() == 1).await,
        "the job was never run again"
    );
    let runs = probe.runs_of("r");
    assert_eq!(runs[0].attempt, 2, "{runs:?}");
    // The probe records the run's end before the worker records the outcome.
    let status = wait_status(&producer, "r", |s| *s == JobStatus::Completed).await;
    assert_eq!(status, JobStatus::Completed);
    let repaired = degraded_reason(&s).is_some_and(|r| r.contains("without a lease entry"));
    assert_eq!(repaired, !matches!(loss, LeaseLoss::Nothing), "{loss:?}");
    producer.close().await;
    s.close().await;
}

#[tokio::test]
async fn a_running_job_whose_workers_set_was_evicted_is_rerun_after_its_worker_dies() {
    a_running_job_that_lost_its_lease_is_rerun_after_its_worker_dies(LeaseLoss::WorkersSet).await
}

#[tokio::test]
async fn a_running_job_whose_workers_lease_was_evicted_is_rerun_after_its_worker_dies() {
    a_running_job_that_lost_its_lease_is_rerun_after_its_worker_dies(LeaseLoss::WorkerLeases).await
}

#[tokio::test]
async fn a_running_job_whose_own_lease_was_evicted_is_rerun_after_its_worker_dies() {
    a_running_job_that_lost_its_lease_is_rerun_after_its_worker_dies(LeaseLoss::OwnLease).await
}

/// A rolling deploy: jobs an older version claimed have a lease each.
#[tokio::test]
async fn a_running_job_with_a_lease_of_its_own_is_rerun_when_it_runs_out() {
    a_running_job_that_lost_its_lease_is_rerun_after_its_worker_dies(LeaseLoss::Nothing).await
}

/// A lease entry whose running record was evicted: the job is gone, and
/// the dead letter says so instead of the entry vanishing at its expiry.
#[tokio::test]
async fn a_lease_entry_without_its_running_record_is_dead_lettered() {
    let server = RedisServer::start();
    let ns = namespace("evict-active");
    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(5_000)).id("gone"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    server.cli(&["DEL", &format!("{{{ns}}}:active")]).unwrap();
    let reason = wait_dead(&s, "gone").await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("running job record is missing")),
        "{reason:?}"
    );
    s.close().await;
}

/// The `slots` hash of concurrency limits out of step with the running
/// jobs: a count left by a record deleted by hand (phantom slots, which would
/// hold a task's jobs back for ever) is set back to what the running records
/// hold, the waiting jobs start, and health says what was repaired.
#[tokio::test]
async fn phantom_concurrency_slots_are_recounted_and_the_waiting_jobs_start() {
    use scheduler_tests::tasks::LimitedProbe;
    let server = RedisServer::start();
    let ns = namespace("phantom-slots");
    // LimitedProbe allows 2 at once: two phantom holders take both slots.
    server
        .cli(&["HSET", &format!("{{{ns}}}:slots"), "t:limited_probe", "2"])
        .unwrap();
    let probe = Probe::default();
    let s = Scheduler::builder(server.url())
        .namespace(&ns)
        .register::<LimitedProbe>()
        .provide(probe.clone())
        .worker(auditing_worker())
        .start()
        .await
        .unwrap();
    for i in 0..3 {
        s.enqueue(JobRequest::<LimitedProbe>::new(ProbeArgs::new("x")).id(format!("p-{i}")))
            .await
            .unwrap();
    }
    assert!(
        probe.wait_finished(3, Duration::from_secs(10)).await,
        "the jobs stayed behind the phantom slots: {:?}",
        s.info("p-0").await.unwrap()
    );
    let reason = degraded_reason(&s).expect("the repair is reported");
    assert!(reason.contains("t:limited_probe"), "{reason}");
    // Nothing is held once they are done.
    let left = server
        .cli(&["HGET", &format!("{{{ns}}}:slots"), "t:limited_probe"])
        .unwrap();
    assert_eq!(left.trim(), "", "{left:?}");
    s.close().await;
}

/// A rolling deploy: an older version's audit knows only `leases`, so it
/// gives a lease of its own to a job that a newer worker runs under its
/// worker's lease. The worker's renewals extend that lease too, so the job
/// runs once, past several such leases; and its end removes the entry, so no
/// stray lease runs out later and dead-letters the job as lost.
#[tokio::test]
async fn a_lease_of_its_own_given_to_a_running_job_by_an_older_audit_is_renewed_and_ended_with_it()
{
    let server = RedisServer::start();
    let ns = namespace("older-audit");
    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(3_000)).id("long"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    // What an older audit writes: a lease ending a lease (1 s) from now.
    let until = (Utc::now().timestamp_millis() + 1_000).to_string();
    server
        .cli(&["ZADD", &format!("{{{ns}}}:leases"), &until, "long"])
        .unwrap();
    let status = wait_status(&s, "long", |s| *s == JobStatus::Completed).await;
    assert_eq!(status, JobStatus::Completed);
    let runs = probe.runs_of("long");
    assert_eq!(runs.len(), 1, "{runs:?}");
    // Past when a stray entry would run out (a lease after the last renewal).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for key in ["leases", "dead_order"] {
        let n = server.cli(&["ZCARD", &format!("{{{ns}}}:{key}")]).unwrap();
        assert_eq!(n.trim(), "0", "{key}");
    }
    s.close().await;
}

/// A running job whose record became unreadable (garbage written over it)
/// while its worker runs another job: the worker's renewals keep its lease,
/// which covers both, so the unreadable one is given a lease of its own,
/// runs out and is dead-lettered with the reason while the other job still
/// runs.
#[tokio::test]
async fn an_unreadable_running_record_is_dead_lettered_while_its_worker_runs_others() {
    let server = RedisServer::start();
    let ns = namespace("garbled-running");
    let probe = Probe::default();
    let s = worker(&server.url(), &ns, &probe).await;
    for id in ["kept", "garbled"] {
        s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x").sleep(6_000)).id(id))
            .await
            .unwrap();
    }
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    server
        .cli(&[
            "HSET",
            &format!("{{{ns}}}:active"),
            "garbled",
            "not msgpack",
        ])
        .unwrap();
    let reason = wait_dead(&s, "garbled").await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("corrupt job record")),
        "{reason:?}"
    );
    let kept = s.status("kept").await.unwrap();
    assert!(matches!(kept, JobStatus::Running { .. }), "{kept:?}");
    s.close().await;
}
