//! Bad input: refused at enqueue with a typed error before Redis is touched,
//! or planted in Redis behind the scheduler's back. Planted garbage becomes a
//! dead-letter entry with a readable reason (or degraded health for a key of
//! the wrong type); the worker keeps running either way.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use scheduler::{Error, Health, JobRequest, JobStatus, Scheduler, When, WorkerConfig};
use scheduler_tests::setup::wait_status;
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, wait_until, Probe, RedisServer};

/// The runs of `greet`, by name and count.
static GREETED: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// A `#[task]`: its arguments are stored by position, `["ada", 2]`.
#[scheduler::task]
async fn greet(name: String, times: u32) {
    GREETED.lock().unwrap().push((name, times));
}

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(1000),
        heartbeat: Some(Duration::from_millis(300)),
        shutdown_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_idle: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

async fn worker(server: &RedisServer, ns: &str, probe: &Probe) -> Scheduler {
    scheduler_tests::init_tracing();
    Scheduler::builder(server.url())
        .namespace(ns)
        .command_timeout(Duration::from_secs(2))
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(fast_worker())
        .start()
        .await
        .expect("scheduler starts")
}

fn dbsize(server: &RedisServer) -> String {
    server.cli(&["DBSIZE"]).unwrap().trim().to_string()
}

#[tokio::test]
async fn invalid_requests_are_typed_errors_before_redis_is_touched() {
    let server = RedisServer::start();
    let p = Scheduler::builder(server.url())
        .namespace(namespace("refuse"))
        .producer_only()
        .start()
        .await
        .unwrap();
    // Start-up wrote only the registry of function libraries (server-wide).
    let started = dbsize(&server);
    let long = "x".repeat(300);
    for bad in [
        "",
        "a{b",
        "b}c",
        "tab\there",
        "nl\n",
        "del\u{7f}",
        "nul\0",
        &long,
    ] {
        let err = p
            .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x")).id(bad))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidJobId { .. }), "{bad:?}: {err}");
    }
    // 10 MiB of arguments against the default 512 KiB limit.
    let huge = ProbeArgs::new(&"x".repeat(10 * 1024 * 1024));
    let err = p
        .enqueue(JobRequest::<ProbeTask>::new(huge))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { size, limit: 524_288 } if size > 10 * 1024 * 1024),
        "{err}"
    );
    // serde_json would write these as null: refused, naming the problem.
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut args = ProbeArgs::new("f");
        args.float = Some(value);
        let err = p
            .enqueue(JobRequest::<ProbeTask>::new(args))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Serialize { .. }), "{text}");
        assert!(
            text.contains("non-finite float") && text.contains("`.float`"),
            "{text}"
        );
    }
    // A delay beyond what a score holds.
    let err = p
        .enqueue(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("late"))
                .when(When::After(Duration::from_secs(u64::MAX))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRunTime(_)), "{err}");
    assert_eq!(dbsize(&server), started, "nothing reached redis");

    // chrono's whole range fits: the far future and far past are accepted.
    for (id, at) in [
        ("max", DateTime::<Utc>::MAX_UTC),
        ("min", DateTime::<Utc>::MIN_UTC),
    ] {
        p.enqueue(
            JobRequest::<ProbeTask>::new(ProbeArgs::new(id))
                .id(id)
                .when(When::At(at)),
        )
        .await
        .unwrap();
    }
    let pending = p.pending::<ProbeTask>().await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    p.close().await;
}

#[tokio::test]
async fn large_integers_round_trip_unchanged_through_a_job() {
    let server = RedisServer::start();
    let ns = namespace("bigint");
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    let mut args = ProbeArgs::new("big");
    args.big = Some((u64::MAX, i64::MIN));
    args.float = Some(f64::MIN_POSITIVE);
    s.enqueue(JobRequest::<ProbeTask>::new(args.clone()).id("big"))
        .await
        .unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert_eq!(probe.runs_of("big")[0].big, Some((u64::MAX, i64::MIN)));
    // And as stored, read back through the typed listing.
    s.enqueue(
        JobRequest::<ProbeTask>::new(args.clone())
            .id("later")
            .when(When::After(Duration::from_secs(60))),
    )
    .await
    .unwrap();
    let pending = s.pending::<ProbeTask>().await.unwrap();
    assert_eq!(pending[0].args, args);
    s.close().await;
}

/// Writes a job record the way the scripts do (msgpack array), with the
/// given task, payload and attempt counter, and makes it due now.
/// `payload` "<non-utf8>" stands for the bytes FF FE FD.
fn plant(server: &RedisServer, ns: &str, id: &str, task: &str, payload: &str, attempts: &str) {
    let script = r#"
        local payload = ARGV[3]
        if payload == '<non-utf8>' then payload = string.char(255, 254, 253) end
        local attempts = tonumber(ARGV[4]) or ARGV[4]
        local rec = {ARGV[2], payload, 100000, attempts, 1, 0, 'planted',
          false, false, false, false, false, false}
        redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(rec))
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return 1
    "#;
    let pending = format!("{{{ns}}}:pending");
    let due = format!("{{{ns}}}:due");
    let out = server.cli(&[
        "EVAL", script, "2", &pending, &due, id, task, payload, attempts,
    ]);
    assert_eq!(out.as_deref().map(str::trim), Some("1"), "planting {id}");
}

#[tokio::test]
async fn planted_garbage_is_dead_lettered_with_a_reason_and_the_worker_goes_on() {
    let server = RedisServer::start();
    let ns = namespace("planted");
    plant(&server, &ns, "non-utf8", "probe", "<non-utf8>", "0");
    plant(
        &server,
        &ns,
        "truncated",
        "probe",
        r#"{"arg":"x","sle"#,
        "0",
    );
    plant(&server, &ns, "shape", "probe", "[1,2,3]", "0");
    // A `#[task]`'s arguments by position, one short and one too many.
    plant(&server, &ns, "arity-short", "greet", r#"["ada"]"#, "0");
    plant(
        &server,
        &ns,
        "arity-long",
        "greet",
        r#"["ada",2,true]"#,
        "0",
    );
    plant(
        &server,
        &ns,
        "unknown",
        "no_such_task",
        r#"{"arg":"x"}"#,
        "0",
    );
    plant(&server, &ns, "counter", "probe", r#"{"arg":"x"}"#, "three");
    server
        .cli(&["ZADD", &format!("{{{ns}}}:due"), "0", "orphan"])
        .unwrap();
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("ok")).id("fine"))
        .await
        .unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let expected = [
        ("non-utf8", "could not be decoded"),
        ("truncated", "could not be decoded"),
        ("shape", "could not be decoded"),
        (
            "arity-short",
            "payload of task `greet` could not be decoded: 1 argument stored by position, the task takes 2 (name, times)",
        ),
        (
            "arity-long",
            "payload of task `greet` could not be decoded: 3 arguments stored by position, the task takes 2 (name, times)",
        ),
        ("counter", "attempt counter is not a number"),
        ("orphan", "the job record is missing"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (dead, all_there) = loop {
        let dead = s.dead_letters(0, 100).await.unwrap();
        let all_there = expected
            .iter()
            .all(|(id, _)| dead.iter().any(|d| d.job_id == *id));
        if all_there || tokio::time::Instant::now() > deadline {
            break (dead, all_there);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(all_there, "{dead:#?}");
    for (id, words) in expected {
        let entry = dead.iter().find(|d| d.job_id == id).unwrap();
        assert!(entry.reason.contains(words), "{id}: {:?}", entry.reason);
    }
    // A job of a task this worker cannot run is not dead-lettered: it waits,
    // using no attempt, for a worker that runs it (a rolling deploy).
    assert!(!dead.iter().any(|d| d.job_id == "unknown"), "{dead:#?}");
    let unknown = s.info("unknown").await.unwrap().unwrap();
    assert_eq!(
        unknown.waiting,
        Some(scheduler::Waiting::Worker),
        "{unknown:?}"
    );
    assert_eq!(unknown.attempts, 0);
    // None of them ran; the worker is healthy and still takes work.
    assert_eq!(probe.runs().len(), 1);
    assert!(!GREETED
        .lock()
        .unwrap()
        .iter()
        .any(|(name, _)| name == "ada"));
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("ok")).id("after"))
        .await
        .unwrap();
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    assert!(s.health().is_healthy(), "{:?}", s.health());
    s.close().await;
}

#[tokio::test]
async fn arguments_by_position_and_objects_from_earlier_versions_both_run() {
    let server = RedisServer::start();
    let ns = namespace("positional");
    // Written by an earlier version (an object by name), and by this one.
    plant(
        &server,
        &ns,
        "old",
        "greet",
        r#"{"name":"old","times":1}"#,
        "0",
    );
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    greet::enqueue(&s, "new", "new".into(), 2).await.unwrap();
    let ran = wait_until(Duration::from_secs(10), || {
        let greeted = GREETED.lock().unwrap();
        ["old", "new"]
            .iter()
            .all(|n| greeted.iter().any(|(name, _)| name == n))
    })
    .await;
    assert!(ran, "{:?}", GREETED.lock().unwrap());
    let greeted = GREETED.lock().unwrap().clone();
    assert!(greeted.contains(&("old".to_string(), 1)), "{greeted:?}");
    assert!(greeted.contains(&("new".to_string(), 2)), "{greeted:?}");
    for id in ["old", "new"] {
        let status = s.status(id).await.unwrap();
        assert_eq!(status, JobStatus::Completed, "{id}");
    }
    // What this version stores: the arguments by position, no names.
    let pending = format!("{{{ns}}}:pending");
    greet::defer_by(&s, "stored", Duration::from_secs(60), "ada".into(), 3)
        .await
        .unwrap();
    let record = server.cli(&["HGET", &pending, "stored"]).unwrap();
    assert!(record.contains(r#"["ada",3]"#), "{record:?}");
    assert!(!record.contains("times"), "{record:?}");
    s.close().await;
}

#[tokio::test]
async fn a_key_of_the_wrong_type_degrades_health_without_a_panic() {
    let server = RedisServer::start();
    let ns = namespace("wrongtype");
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    let mut health = s.watch_health();
    let pending = format!("{{{ns}}}:pending");
    let due = format!("{{{ns}}}:due");
    server.cli(&["SET", &pending, "not a hash"]).unwrap();
    server.cli(&["ZADD", &due, "0", "x"]).unwrap();
    // The worker's next claim hits the string.
    let degraded =
        tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| !h.is_healthy()))
            .await
            .expect("health degraded")
            .unwrap()
            .clone();
    let Health::Degraded { reason, .. } = degraded else {
        unreachable!()
    };
    assert!(reason.contains("wrong type"), "{reason}");
    // Callers get the typed error.
    let err = s
        .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x")).id("y"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
    // Repaired by hand: the same worker recovers.
    server.cli(&["DEL", &pending]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || s.health().is_healthy()).await);
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("x")).id("y"))
        .await
        .unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    // The probe records the run's end before the worker records the outcome.
    assert_eq!(
        wait_status(&s, "y", |st| *st == JobStatus::Completed).await,
        JobStatus::Completed,
        "{:?}",
        s.info("y").await
    );
    s.close().await;
}
