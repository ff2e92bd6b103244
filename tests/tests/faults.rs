//! Fault tolerance of workers and jobs: long jobs, poison pills, outages,
//! cancellation in every window, bounded growth, graceful shutdown.
//! Short leases (1 s) and heartbeats (300 ms); every test has its own
//! `redis-server` and namespace, so they run in parallel.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use scheduler::{CancelOutcome, JobRequest, JobStatus, Scheduler, When, WorkerConfig};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, wait_until, Probe, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");
const LEASE: Duration = Duration::from_millis(1000);
const HEARTBEAT: Duration = Duration::from_millis(300);

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        lease: LEASE,
        heartbeat: Some(HEARTBEAT),
        shutdown_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_idle: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

async fn worker_with(url: &str, ns: &str, probe: &Probe, config: WorkerConfig) -> Scheduler {
    scheduler_tests::init_tracing();
    Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(config)
        .start()
        .await
        .expect("scheduler starts")
}

async fn worker(server: &RedisServer, ns: &str, probe: &Probe) -> Scheduler {
    worker_with(&server.url(), ns, probe, fast_worker()).await
}

async fn producer(server: &RedisServer, ns: &str) -> Scheduler {
    Scheduler::builder(server.url())
        .namespace(ns)
        .producer_only()
        .start()
        .await
        .expect("producer starts")
}

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

async fn wait_status(s: &Scheduler, id: &str, want: JobStatus, limit: Duration) -> JobStatus {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = s.status(id).await.unwrap();
        if status == want || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Scenario 3: a job running 5 leases long, with a healthy heartbeat, is
/// never handed to the other idle worker.
#[tokio::test]
async fn a_long_job_with_a_healthy_heartbeat_is_never_redelivered() {
    let server = RedisServer::start();
    let ns = namespace("long");
    let (pa, pb) = (Probe::default(), Probe::default());
    let a = worker(&server, &ns, &pa).await;
    a.enqueue(job(
        "long",
        ProbeArgs::new("l").sleep(5 * LEASE.as_millis() as u64),
    ))
    .await
    .unwrap();
    assert!(pa.wait_started(1, Duration::from_secs(5)).await);
    let b = worker(&server, &ns, &pb).await;
    assert_eq!(
        wait_status(&a, "long", JobStatus::Completed, Duration::from_secs(10)).await,
        JobStatus::Completed
    );
    let info = a.info("long").await.unwrap().unwrap();
    assert_eq!(info.attempts, 1, "{info:?}");
    assert_eq!(pa.runs_of("long").len(), 1);
    assert!(pb.runs().is_empty(), "redelivered: {:?}", pb.runs());
    a.close().await;
    b.close().await;
}

/// Scenario 4: a job that aborts its worker process on every attempt. A
/// supervisor respawns the workers; after max_attempts (3) stalled attempts
/// the job is dead-lettered as stalled, and other jobs keep flowing.
#[tokio::test]
async fn a_poison_pill_is_dead_lettered_as_stalled_while_other_jobs_flow() {
    let server = RedisServer::start();
    let ns = namespace("poison");
    let events = Events::default();
    let url = server.url();
    let spawn = || ChildWorker::spawn(BIN, &url, &ns, 1000, 300, 1, &events);
    // Concurrency 1 each: the poison never takes an innocent job down with it.
    let mut workers = [spawn().await, spawn().await];
    let p = producer(&server, &ns).await;
    p.enqueue(job("poison", ProbeArgs::new("p").mode("exit")))
        .await
        .unwrap();
    let others: Vec<String> = (0..20).map(|i| format!("ok{i}")).collect();
    p.enqueue_many(others.iter().enumerate().map(|(i, id)| {
        job(id, ProbeArgs::new("o").sleep(20))
            .when(When::After(Duration::from_millis(200 * i as u64)))
    }))
    .await
    .unwrap();
    let started = Instant::now();
    let mut respawns = 0;
    loop {
        for w in workers.iter_mut() {
            if w.exited() {
                *w = spawn().await;
                respawns += 1;
            }
        }
        let done = p.status("poison").await.unwrap() == JobStatus::Failed
            && events.count("end") >= others.len();
        if done || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = p.info("poison").await.unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Failed, "{info:?}");
    assert_eq!(info.attempts, 3);
    let poison_starts = events
        .all()
        .iter()
        .filter(|e| e.job_id == "poison" && e.event == "start")
        .count();
    assert_eq!(poison_starts, 3, "exactly max_attempts attempts");
    assert_eq!(respawns, 3, "each attempt killed one worker");
    let dead = p.dead_letters(0, 10).await.unwrap();
    let entry = dead
        .iter()
        .find(|d| d.job_id == "poison")
        .expect("dead letter");
    assert!(entry.reason.starts_with("stalled"), "{:?}", entry.reason);
    assert!(
        entry.reason.contains("attempt 3 of 3"),
        "{:?}",
        entry.reason
    );
    for id in &others {
        assert_eq!(p.status(id).await.unwrap(), JobStatus::Completed, "{id}");
    }
    assert_eq!(dead.len(), 1, "only the poison is dead: {dead:?}");
    p.close().await;
}

/// Scenario 11: 1,000 jobs due at +2 s, no worker until +5 s, then three
/// workers: each job runs exactly once, none before its time.
#[tokio::test]
async fn deferred_jobs_wait_out_a_worker_outage_and_run_once() {
    let server = RedisServer::start();
    let ns = namespace("outage");
    let p = producer(&server, &ns).await;
    let t0 = Instant::now();
    let due = Utc::now() + chrono::TimeDelta::seconds(2);
    let ids: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
    p.enqueue_many(
        ids.iter()
            .map(|id| job(id, ProbeArgs::new("d")).when(When::At(due))),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed())).await;
    let probe = Probe::default();
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(worker(&server, &ns, &probe).await);
    }
    assert!(probe.wait_finished(1000, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = probe.runs();
    assert_eq!(runs.len(), 1000, "no job ran twice");
    let distinct: HashSet<&str> = runs.iter().map(|r| r.job_id.as_str()).collect();
    assert_eq!(distinct.len(), 1000);
    for r in &runs {
        assert!(r.start >= r.scheduled_at, "{r:?} ran early");
        assert!(r.start >= due, "{r:?} ran before {due}");
        // Run times are stored rounded up to the millisecond.
        assert!(
            r.scheduled_at - due < chrono::TimeDelta::milliseconds(1),
            "{r:?}"
        );
    }
    for w in workers {
        w.close().await;
    }
    p.close().await;
}

/// Scenario 12: of 100 deferred jobs, the 50 cancelled never start and the
/// other 50 run once.
#[tokio::test]
async fn cancelled_deferred_jobs_never_start_and_the_rest_run() {
    let server = RedisServer::start();
    let ns = namespace("cancel100");
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    let ids: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    s.enqueue_many(
        ids.iter()
            .map(|id| job(id, ProbeArgs::new("c")).when(When::After(Duration::from_millis(1500)))),
    )
    .await
    .unwrap();
    for id in ids.iter().step_by(2) {
        assert!(
            matches!(s.cancel(id).await.unwrap(), CancelOutcome::Removed { .. }),
            "{id}"
        );
    }
    assert!(probe.wait_finished(50, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ran: HashMap<String, usize> = probe.runs().iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.job_id.clone()).or_default() += 1;
        m
    });
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            assert!(!ran.contains_key(id), "cancelled {id} ran");
            assert_eq!(s.status(id).await.unwrap(), JobStatus::Cancelled);
        } else {
            assert_eq!(ran.get(id), Some(&1), "{id}");
        }
    }
    s.close().await;
}

/// Scenario 13a: a running job aborted by cancel ends `Cancelled` and is not
/// re-run after its lease would have expired.
#[tokio::test]
async fn an_aborted_running_job_ends_cancelled_and_is_not_rerun() {
    let server = RedisServer::start();
    let ns = namespace("abort");
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    s.enqueue(job("a", ProbeArgs::new("a").sleep(5000)))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(5)).await);
    assert!(matches!(
        s.cancel("a").await.unwrap(),
        CancelOutcome::AbortSignalled { .. }
    ));
    assert_eq!(
        wait_status(&s, "a", JobStatus::Cancelled, Duration::from_secs(3)).await,
        JobStatus::Cancelled
    );
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(s.status("a").await.unwrap(), JobStatus::Cancelled);
    assert_eq!(probe.runs_of("a").len(), 1);
    assert!(
        probe.runs_of("a")[0].end.is_none(),
        "the future was dropped"
    );
    s.close().await;
}

/// Scenario 13b: the worker running a job is SIGKILLed; the job is cancelled
/// while its lease is still live. When the lease expires it ends `Cancelled`
/// instead of being handed to the live worker.
#[tokio::test]
async fn a_job_cancelled_during_a_dead_workers_lease_is_not_rerun() {
    let server = RedisServer::start();
    let ns = namespace("abortdead");
    let events = Events::default();
    let mut a = ChildWorker::spawn(BIN, &server.url(), &ns, 1000, 300, 5, &events).await;
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    // Only A may take it: B starts after A has claimed it.
    s.close().await;
    let p = producer(&server, &ns).await;
    p.enqueue(job("k", ProbeArgs::new("k").sleep(5000)))
        .await
        .unwrap();
    assert!(
        events
            .wait_pid("start", a.pid(), Duration::from_secs(5))
            .await
    );
    let b = worker(&server, &ns, &probe).await;
    a.kill();
    let killed = Instant::now();
    assert!(matches!(
        p.cancel("k").await.unwrap(),
        CancelOutcome::AbortSignalled { .. }
    ));
    assert!(killed.elapsed() < LEASE, "cancelled within the lease");
    assert_eq!(
        wait_status(&p, "k", JobStatus::Cancelled, Duration::from_secs(5)).await,
        JobStatus::Cancelled
    );
    tokio::time::sleep(LEASE).await;
    let info = p.info("k").await.unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Cancelled, "{info:?}");
    assert_eq!(info.attempts, 1);
    assert!(probe.runs().is_empty(), "re-run on B: {:?}", probe.runs());
    assert!(
        info.last_error.unwrap_or_default().contains("cancelled"),
        "the reason says so"
    );
    b.close().await;
    p.close().await;
}

fn info_field(server: &RedisServer, field: &str) -> u64 {
    let info = server.cli(&["INFO", "memory"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn dbsize(server: &RedisServer) -> u64 {
    server.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap()
}

/// Scenario 14: 20,000 jobs (half failing for good) with a 1 s keep_result and
/// a dead-letter cap of 100: afterwards the keyspace and memory return near
/// the baseline and the dead letter holds at most its cap. 20,000 keeps the
/// test under ~20 s in a debug build on 2 cores while still being 200x the cap
/// and 40x the per-claim sweep, so unbounded growth would show.
#[tokio::test]
async fn keys_and_memory_return_to_baseline_after_retention() {
    const JOBS: usize = 20_000;
    const CAP: u32 = 100;
    let server = RedisServer::start();
    let ns = namespace("growth");
    let probe = Probe::default();
    let config = WorkerConfig {
        concurrency: 200,
        ..fast_worker()
    };
    let s = Scheduler::builder(server.url())
        .namespace(&ns)
        .keep_result(Duration::from_secs(1))
        .dead_letter_cap(CAP)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(config)
        .start()
        .await
        .unwrap();
    let base_keys = dbsize(&server);
    let base_mem = info_field(&server, "used_memory");
    let started = Instant::now();
    let requests = (0..JOBS).map(|i| {
        let mode = if i % 2 == 0 { "ok" } else { "permanent" };
        job(&format!("g{i}"), ProbeArgs::new("g").mode(mode))
    });
    s.enqueue_many(requests).await.unwrap();
    let peak_mem = info_field(&server, "used_memory");
    assert!(probe.wait_finished(JOBS, Duration::from_secs(90)).await);
    let ran_in = started.elapsed();
    // Retention (1 s) passes; the idle worker's claims sweep what is left.
    // The reply log is not swept: each of its keys (one per state-changing
    // call, `{ns}:reply:<request id>`) expires on its own within the re-send
    // window (a minute with the default command timeout), so it is counted
    // apart and its expiries are checked.
    let reply_log = || -> Vec<i64> {
        let script = "local ks = redis.call('KEYS', ARGV[1]) local lo, hi = -1, -1 \
            for _, k in ipairs(ks) do local t = redis.call('PTTL', k) \
            if lo < 0 or t < lo then lo = t end if t > hi then hi = t end end \
            return {#ks, lo, hi}";
        let pattern = format!("{{{ns}}}:reply:*");
        server
            .cli(&["EVAL", script, "0", &pattern])
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    let lasting = || dbsize(&server) - reply_log()[0] as u64;
    // Lasting, each of a bounded size: seq, dead, dead_order, the minute's
    // activity counts, and the live workers' announcements (workers,
    // worker_queues).
    let settled = wait_until(Duration::from_secs(15), || lasting() <= base_keys + 6).await;
    let keys = lasting();
    let names = server
        .cli(&["KEYS", "*"])
        .unwrap_or_default()
        .replace('\n', " ");
    assert!(
        settled,
        "{keys} keys remain (baseline {base_keys}): {names}"
    );
    let [replies, shortest, longest] = reply_log()[..] else {
        panic!("reply log summary");
    };
    assert!(
        replies == 0 || (shortest > 0 && longest <= 60_000),
        "{replies} reply-log keys, time to live {shortest}..{longest} ms: each must expire within the re-send window"
    );
    let dead_len: u64 = server
        .cli(&["HLEN", &format!("{{{ns}}}:dead")])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(dead_len, u64::from(CAP), "the dead letter is capped");
    assert_eq!(s.dead_letters(0, 1000).await.unwrap().len(), CAP as usize);
    let mem = info_field(&server, "used_memory");
    assert!(
        mem < base_mem + 1024 * 1024,
        "used_memory {mem} vs baseline {base_mem} (peak at enqueue {peak_mem}); ran in {ran_in:?}"
    );
    eprintln!(
        "growth: {JOBS} jobs in {ran_in:?}; keys {base_keys} -> {keys}; used_memory {base_mem} -> peak {peak_mem} -> {mem}"
    );
    s.close().await;
}

/// Scenario 15: close() with a job longer than the grace period: the job is
/// released and another worker restarts it at once; nothing is claimed by
/// the closing worker after close started.
#[tokio::test]
async fn graceful_shutdown_releases_a_long_job_to_another_worker() {
    let server = RedisServer::start();
    let ns = namespace("shutdown");
    let (pa, pb) = (Probe::default(), Probe::default());
    let config = WorkerConfig {
        shutdown_grace: Duration::from_millis(300),
        ..fast_worker()
    };
    let a = worker_with(&server.url(), &ns, &pa, config).await;
    a.enqueue(job("long", ProbeArgs::new("l").sleep(3000)))
        .await
        .unwrap();
    assert!(pa.wait_started(1, Duration::from_secs(5)).await);
    let b = worker(&server, &ns, &pb).await;
    let p = producer(&server, &ns).await;
    let before = p.info("long").await.unwrap().unwrap();
    let closing = tokio::spawn({
        let a = a.clone();
        async move {
            let t = Instant::now();
            a.close().await;
            t.elapsed()
        }
    });
    // Work offered while A closes goes to B only.
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.enqueue_many((0..5).map(|i| job(&format!("new{i}"), ProbeArgs::new("n"))))
        .await
        .unwrap();
    let close_took = closing.await.unwrap();
    let closed_at = Instant::now();
    assert!(close_took < Duration::from_secs(2), "{close_took:?}");
    assert!(
        pb.wait_started(6, Duration::from_secs(5)).await,
        "{:?}",
        pb.runs()
    );
    let restart = pb.runs_of("long")[0].clone();
    let delay = closed_at.elapsed();
    assert!(
        delay < LEASE,
        "restarted {delay:?} after close, not at once"
    );
    // A release never hands its fence token (generation, attempt) out again,
    // so the restart is attempt 2; it uses up no attempt: the allowance grows.
    assert_eq!(restart.attempt, 2, "the released attempt's token is reused");
    let after = p.info("long").await.unwrap().unwrap();
    assert_eq!(
        after.max_attempts - after.attempts,
        before.max_attempts - before.attempts,
        "a release used up an attempt: {before:?} -> {after:?}"
    );
    assert_eq!(
        pa.runs().len(),
        1,
        "A claimed after close started: {:?}",
        pa.runs()
    );
    assert_eq!(
        wait_status(&p, "long", JobStatus::Completed, Duration::from_secs(5)).await,
        JobStatus::Completed
    );
    let info = p.info("long").await.unwrap().unwrap();
    // The probe task allows 3 attempts; the release added one.
    assert_eq!((info.attempts, info.max_attempts), (2, 4), "{info:?}");
    b.close().await;
    p.close().await;
}
