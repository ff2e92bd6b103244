//! Fault tolerance of Redis and the network: restarts with and without
//! persistence, a hung server, paused writes, dropped and half-open
//! connections. Each test owns its `redis-server` (and proxy).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scheduler::{Error, Health, JobRequest, JobStatus, Scheduler, WorkerConfig};
use scheduler_tests::proxy::{Mode, Proxy};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, wait_until, Probe, RedisServer};

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(1000),
        heartbeat: Some(Duration::from_millis(300)),
        shutdown_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_idle: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

async fn start(
    url: &str,
    ns: &str,
    probe: &Probe,
    timeout: Duration,
    worker: Option<WorkerConfig>,
) -> Scheduler {
    let builder = Scheduler::builder(url)
        .namespace(ns)
        .command_timeout(timeout)
        .register::<ProbeTask>()
        .provide(probe.clone());
    scheduler_tests::setup::start_with_worker(builder, worker).await
}

fn job(id: &str, args: ProbeArgs) -> JobRequest<ProbeTask> {
    JobRequest::new(args).id(id)
}

/// Records every health value a scheduler goes through.
fn record_health(s: &Scheduler) -> Arc<Mutex<Vec<Health>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut rx = s.watch_health();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let h = rx.borrow_and_update().clone();
            sink.lock().unwrap().push(h);
        }
    });
    seen
}

fn degraded_reasons(seen: &Mutex<Vec<Health>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|h| match h {
            Health::Degraded { reason, .. } => Some(reason.clone()),
            Health::Healthy => None,
        })
        .collect()
}

/// Enqueues until accepted, retrying transient errors. The id stays taken
/// while the outcome is kept (`unique_until_result_expires`): a retry after an
/// unknown outcome whose job has already run and finished is then
/// `RecentlyFinished`, never a second job. Without it the id is free once the
/// job finished (the default), and such a retry, or the client re-sending the
/// command after a reconnect, runs the job again as a new generation.
async fn enqueue_retrying(s: &Scheduler, id: &str, args: ProbeArgs) {
    for _ in 0..200 {
        match s
            .enqueue(job(id, args.clone()).unique_until_result_expires())
            .await
        {
            Ok(_) => return,
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{id}: {e:?}"),
        }
    }
    panic!("{id} never accepted");
}

/// Runs per job id, and checks the precise at-least-once property: every job
/// ended `Completed`; every run of a job is a distinct attempt (a job re-runs
/// only as a new attempt, after its lease was lost); and the recorded outcome
/// is the one of the last run. Attempts can exceed runs: a claim that timed
/// out on the client but executed on the server (sent into a hung or dying
/// connection) takes the job, nobody runs it, and its lease expires.
/// Returns (jobs run more than once, attempts consumed without a run).
async fn check_runs(s: &Scheduler, probe: &Probe, ids: &[String]) -> (usize, u32) {
    let mut by_job: HashMap<String, Vec<(u64, u32)>> = HashMap::new();
    for r in probe.runs() {
        by_job
            .entry(r.job_id.clone())
            .or_default()
            .push((r.generation, r.attempt));
    }
    let (mut rerun, mut unrun) = (0, 0);
    for id in ids {
        let info = s.info(id).await.unwrap().unwrap();
        assert_eq!(info.status, JobStatus::Completed, "{info:?}");
        let runs = by_job.remove(id).unwrap_or_default();
        // One job per id: a second generation would be a second job.
        assert!(
            runs.iter()
                .all(|(generation, _)| *generation == info.generation),
            "{id}: runs of another generation than {}: {runs:?}",
            info.generation
        );
        let mut attempts: Vec<u32> = runs.iter().map(|(_, attempt)| *attempt).collect();
        attempts.sort_unstable();
        let n = attempts.len();
        attempts.dedup();
        assert_eq!(attempts.len(), n, "{id}: two runs of one attempt");
        assert_eq!(
            attempts.last().copied(),
            Some(info.attempts),
            "{id}: the recorded outcome is not the last run's"
        );
        if n > 1 {
            rerun += 1;
        }
        unrun += info.attempts - n as u32;
    }
    (rerun, unrun)
}

/// Scenario 5: Redis with AOF (fsync always) is SIGKILLed and restarted under
/// load. No accepted job is lost; workers reconnect, reload their scripts and
/// resume by themselves; health goes degraded and back, with no data-loss alert.
#[tokio::test]
async fn redis_restarted_with_aof_loses_no_accepted_job() {
    let mut server = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let ns = namespace("aof");
    let probe = Probe::default();
    let url = server.url();
    let w1 = start(
        &url,
        &ns,
        &probe,
        Duration::from_secs(1),
        Some(fast_worker()),
    )
    .await;
    let w2 = start(
        &url,
        &ns,
        &probe,
        Duration::from_secs(1),
        Some(fast_worker()),
    )
    .await;
    let seen = record_health(&w1);
    let p = start(&url, &ns, &probe, Duration::from_secs(1), None).await;
    let producer = tokio::spawn({
        let p = p.clone();
        async move {
            let mut accepted = Vec::new();
            for i in 0..300 {
                let id = format!("j{i}");
                if p.enqueue(job(&id, ProbeArgs::new("a").sleep(30)))
                    .await
                    .is_ok()
                {
                    accepted.push(id);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        }
    });
    assert!(probe.wait_started(50, Duration::from_secs(10)).await);
    // Down for 1.5 s (longer than the command timeout), so callers notice.
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_again();
    let accepted = producer.await.unwrap();
    assert!(accepted.len() > 200, "{} accepted", accepted.len());
    assert!(
        wait_until(Duration::from_secs(30), || {
            let runs = probe.runs();
            accepted
                .iter()
                .all(|id| runs.iter().any(|r| &r.job_id == id && r.end.is_some()))
        })
        .await,
        "an accepted job was lost"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rerun, unrun) = check_runs(&p, &probe, &accepted).await;
    eprintln!(
        "aof restart: {} accepted, {rerun} re-run, {unrun} attempts lost with a claim reply",
        accepted.len()
    );
    assert!(wait_until(Duration::from_secs(5), || w1.health().is_healthy()).await);
    let reasons = degraded_reasons(&seen);
    assert!(!reasons.is_empty(), "health never went degraded");
    assert!(
        reasons.iter().all(|r| !r.contains("restarted empty")),
        "false data-loss alert: {reasons:?}"
    );
    for s in [w1, w2, p] {
        s.close().await;
    }
}

/// Scenario 6: Redis killed and restarted empty (no persistence). No panic,
/// the loss is reported (error log and degraded health naming it), new jobs work.
#[tokio::test]
async fn redis_restarted_empty_is_reported_and_new_jobs_work() {
    let mut server = RedisServer::start();
    let ns = namespace("empty");
    let probe = Probe::default();
    let s = start(
        &server.url(),
        &ns,
        &probe,
        Duration::from_secs(1),
        Some(fast_worker()),
    )
    .await;
    let seen = record_health(&s);
    for i in 0..5 {
        s.enqueue(
            job(&format!("later{i}"), ProbeArgs::new("l"))
                .when(scheduler::When::After(Duration::from_secs(600))),
        )
        .await
        .unwrap();
    }
    server.restart();
    assert!(
        wait_until(Duration::from_secs(10), || degraded_reasons(&seen)
            .iter()
            .any(|r| r.contains("redis restarted empty")))
        .await,
        "{:?}",
        seen.lock().unwrap()
    );
    let reason = degraded_reasons(&seen)
        .into_iter()
        .find(|r| r.contains("restarted empty"))
        .unwrap();
    assert!(reason.contains("from 5 to 0"), "{reason}");
    // Still degraded (the alert is held) although calls succeed again.
    enqueue_retrying(&s, "new", ProbeArgs::new("n")).await;
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert!(!s.health().is_healthy());
    assert_eq!(s.status("later0").await.unwrap(), JobStatus::NotFound);
    s.close().await;
}

/// Scenario 7: the Redis process hangs (SIGSTOP) for 4 s with a 1 s command
/// timeout. 4 s is 4 command timeouts and 4 leases: long enough for every
/// timeout, reconnect and lease-expiry path to fire, without spending the 10 s
/// of the wording. Enqueue fails with a typed transient error within
/// the timeout plus margin; workers do not wedge; after SIGCONT every job is
/// completed with exactly one recorded outcome per run.
#[tokio::test]
async fn a_hung_redis_gives_typed_timeouts_and_workers_recover() {
    let server = RedisServer::start();
    let ns = namespace("hung");
    let probe = Probe::default();
    let timeout = Duration::from_secs(1);
    let w = start(&server.url(), &ns, &probe, timeout, Some(fast_worker())).await;
    let p = start(&server.url(), &ns, &probe, timeout, None).await;
    let seen = record_health(&w);
    let ids: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
    p.enqueue_many(ids.iter().map(|id| job(id, ProbeArgs::new("h").sleep(700))))
        .await
        .unwrap();
    assert!(probe.wait_started(5, Duration::from_secs(5)).await);
    server.pause();
    let paused = Instant::now();
    let t = Instant::now();
    let err = p
        .enqueue(job("during", ProbeArgs::new("d")))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(err, Error::Timeout { .. } | Error::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(1500),
        "took {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(paused.elapsed())).await;
    assert!(!w.health().is_healthy(), "the worker noticed");
    server.resume();
    // The "during" enqueue may or may not have reached Redis: retrying the id is safe.
    enqueue_retrying(&p, "during", ProbeArgs::new("d")).await;
    let mut all = ids.clone();
    all.push("during".into());
    assert!(
        wait_until(Duration::from_secs(20), || {
            let runs = probe.runs();
            all.iter()
                .all(|id| runs.iter().any(|r| &r.job_id == id && r.end.is_some()))
        })
        .await,
        "workers wedged: {:?}",
        probe.runs().len()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rerun, unrun) = check_runs(&p, &probe, &all).await;
    eprintln!(
        "hung redis: {rerun} of {} jobs re-run, {unrun} attempts lost with a claim reply",
        all.len()
    );
    assert!(wait_until(Duration::from_secs(5), || w.health().is_healthy()).await);
    assert!(!degraded_reasons(&seen).is_empty());
    w.close().await;
    p.close().await;
}

/// Scenario 8: `CLIENT PAUSE 2000 WRITE`. Callers with a timeout above the
/// pause wait and succeed; callers with a shorter timeout get a typed
/// transient error; nothing is lost or doubled. The lease (5 s) outlasts the
/// pause, so no job may run twice.
#[tokio::test]
async fn client_pause_write_makes_callers_wait_or_fail_typed_and_loses_nothing() {
    let server = RedisServer::start();
    let ns = namespace("pause");
    let probe = Probe::default();
    let config = WorkerConfig {
        lease: Duration::from_secs(5),
        heartbeat: Some(Duration::from_secs(1)),
        ..fast_worker()
    };
    let w = start(
        &server.url(),
        &ns,
        &probe,
        Duration::from_secs(5),
        Some(config),
    )
    .await;
    let patient = start(&server.url(), &ns, &probe, Duration::from_secs(5), None).await;
    let hasty = start(&server.url(), &ns, &probe, Duration::from_millis(500), None).await;
    let ids: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    patient
        .enqueue_many(ids.iter().map(|id| job(id, ProbeArgs::new("p").sleep(200))))
        .await
        .unwrap();
    assert!(probe.wait_started(3, Duration::from_secs(5)).await);
    server.cli(&["CLIENT", "PAUSE", "2000", "WRITE"]).unwrap();
    let t = Instant::now();
    let (waited, hurried) = tokio::join!(
        patient.enqueue(job("waited", ProbeArgs::new("w"))),
        hasty.enqueue(job("hurried", ProbeArgs::new("h"))),
    );
    let took = t.elapsed();
    waited.unwrap();
    assert!(
        took >= Duration::from_millis(1500),
        "did not wait: {took:?}"
    );
    let err = hurried.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    enqueue_retrying(&hasty, "hurried", ProbeArgs::new("h")).await;
    let mut all = ids.clone();
    all.extend(["waited".to_string(), "hurried".to_string()]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let runs = probe.runs();
            all.iter()
                .all(|id| runs.iter().any(|r| &r.job_id == id && r.end.is_some()))
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        check_runs(&patient, &probe, &all).await,
        (0, 0),
        "a job ran twice"
    );
    assert_eq!(probe.runs().len(), all.len());
    for s in [w, patient, hasty] {
        s.close().await;
    }
}

/// Scenario 9: every connection is dropped every 500 ms for 8 s under load
/// (through the proxy), plus `CLIENT KILL TYPE normal` on the server. Every
/// job completes; a job re-runs only as a new attempt after a lost lease
/// (e.g. a claim whose reply died with its connection: the jobs it took wait
/// for their lease), and the number of such re-runs is printed.
#[tokio::test]
async fn connections_dropped_repeatedly_under_load_lose_no_job() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("drops");
    let probe = Probe::default();
    let url = proxy.url();
    let w1 = start(
        &url,
        &ns,
        &probe,
        Duration::from_secs(1),
        Some(fast_worker()),
    )
    .await;
    let w2 = start(
        &url,
        &ns,
        &probe,
        Duration::from_secs(1),
        Some(fast_worker()),
    )
    .await;
    let p = start(&url, &ns, &probe, Duration::from_secs(1), None).await;
    let ids: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
    let producer = tokio::spawn({
        let p = p.clone();
        let ids = ids.clone();
        async move {
            for id in &ids {
                enqueue_retrying(&p, id, ProbeArgs::new("n").sleep(50)).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    });
    let chaos_until = Instant::now() + Duration::from_secs(8);
    let mut round = 0;
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if round % 4 == 3 {
            server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        } else {
            proxy.close_all();
        }
        round += 1;
    }
    producer.await.unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let runs = probe.runs();
            ids.iter()
                .all(|id| runs.iter().any(|r| &r.job_id == id && r.end.is_some()))
        })
        .await,
        "a job was lost"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rerun, unrun) = check_runs(&p, &probe, &ids).await;
    eprintln!(
        "dropped connections: {} connections accepted, {rerun} of {} jobs re-run, {unrun} attempts lost with a claim reply",
        proxy.accepted(),
        ids.len()
    );
    assert!(proxy.accepted() > 20, "reconnects happened");
    for s in [w1, w2, p] {
        s.close().await;
    }
}

/// Scenario 10: a half-open connection (the proxy swallows everything).
/// Calls fail within the command timeout, the client reconnects once the
/// path works again, and the worker resumes.
#[tokio::test]
async fn a_half_open_connection_is_detected_and_work_resumes() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("halfopen");
    let probe = Probe::default();
    let timeout = Duration::from_secs(1);
    let w = start(&proxy.url(), &ns, &probe, timeout, Some(fast_worker())).await;
    let seen = record_health(&w);
    w.enqueue(job("before", ProbeArgs::new("b"))).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(5)).await);
    proxy.set_mode(Mode::Blackhole);
    let t = Instant::now();
    let err = w
        .enqueue(job("during", ProbeArgs::new("d")))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        took < timeout + Duration::from_millis(1500),
        "took {took:?}"
    );
    assert!(wait_until(Duration::from_secs(3), || !w.health().is_healthy()).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_mode(Mode::Pass);
    let back = Instant::now();
    enqueue_retrying(&w, "during", ProbeArgs::new("d")).await;
    enqueue_retrying(&w, "after", ProbeArgs::new("a")).await;
    assert!(
        probe.wait_finished(3, Duration::from_secs(10)).await,
        "{:?}",
        probe.runs()
    );
    eprintln!(
        "half-open: resumed {:?} after the path came back",
        back.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || w.health().is_healthy()).await);
    assert!(!degraded_reasons(&seen).is_empty());
    assert_eq!(probe.runs_of("during").len(), 1);
    w.close().await;
}

/// A claim whose reply is lost (executed by Redis, answered after the client
/// gave up) does not strand its jobs until their lease expires: the worker
/// sends the claim again with the same ticket and gets the same jobs back.
#[tokio::test]
async fn a_claim_whose_reply_is_lost_gets_its_jobs_back() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("lost-claim");
    let probe = Probe::default();
    let lease = Duration::from_secs(10);
    let w = Scheduler::builder(proxy.url())
        .namespace(&ns)
        .command_timeout(Duration::from_millis(400))
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            lease,
            heartbeat: Some(Duration::from_secs(3)),
            max_idle: Duration::from_millis(100),
            ..WorkerConfig::default()
        })
        .start()
        .await
        .unwrap();
    let p = Scheduler::builder(server.url())
        .namespace(&ns)
        .producer_only()
        .start()
        .await
        .unwrap();
    // Every reply now arrives after the worker's command timeout.
    proxy.set_mode(Mode::Delay(Duration::from_millis(1200)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("l{i}")).collect();
    for id in &ids {
        p.enqueue(job(id, ProbeArgs::new("x"))).await.unwrap();
    }
    // Redis runs the worker's claims; their replies are lost.
    let taken = wait_until(Duration::from_secs(5), || {
        server
            .cli(&["HLEN", &format!("{{{ns}}}:active")])
            .is_some_and(|n| n.trim() != "0")
    })
    .await;
    assert!(taken, "no claim reached Redis through the delaying proxy");
    proxy.set_mode(Mode::Pass);
    let started = Instant::now();
    // Well before the 10 s lease: the retried claim got the jobs back.
    assert!(
        probe.wait_finished(ids.len(), Duration::from_secs(6)).await,
        "claimed jobs waited for their lease: {} of {} ran",
        probe.finished(),
        ids.len()
    );
    assert!(started.elapsed() < lease);
    for id in &ids {
        let runs = probe.runs_of(id);
        assert_eq!(runs.len(), 1, "{id}");
        assert_eq!(
            runs[0].attempt, 1,
            "{id}: an attempt was used up without a run"
        );
    }
    w.close().await;
    p.close().await;
}

/// An enqueue whose reply is lost after its job already ran: the client asks
/// again (through enqueue.lua, which finds the finished job by the request's
/// nonce) and gets the same job, not a second one. The first send of a plain
/// enqueue skips that lookup (`enqueue_one.lua`), so its re-send must not be
/// the same call.
#[tokio::test]
async fn an_enqueue_whose_reply_is_lost_after_its_job_ran_is_still_one_job() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port()).await;
    let ns = namespace("lost-enqueue");
    let probe = Probe::default();
    let w = start(
        &server.url(),
        &ns,
        &probe,
        Duration::from_secs(2),
        Some(fast_worker()),
    )
    .await;
    let p = start(&proxy.url(), &ns, &probe, Duration::from_secs(10), None).await;
    // The request reaches Redis after the delay, its reply after as much again.
    proxy.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let enqueue = tokio::spawn({
        let p = p.clone();
        async move { p.enqueue(job("once", ProbeArgs::new("x"))).await }
    });
    assert!(
        probe.wait_finished(1, Duration::from_secs(10)).await,
        "the job never ran"
    );
    // Its reply is still in the proxy: lose it.
    proxy.set_mode(Mode::Pass);
    proxy.close_all();
    let outcome = enqueue.await.unwrap().expect("the enqueue is answered");
    let runs = probe.runs_of("once");
    assert!(
        matches!(outcome, scheduler::EnqueueOutcome::Enqueued { generation, .. } if generation == runs[0].generation),
        "{outcome:?} (run: {runs:?})"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(probe.runs_of("once").len(), 1, "the job ran twice");
    w.close().await;
    p.close().await;
}
