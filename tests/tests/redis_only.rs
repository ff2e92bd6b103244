//! Redis-specific behaviour: input refused before Redis is touched, an
//! unreachable server, garbage planted in Redis, a restarted server.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use scheduler::{Error, Health, IfRunning, JobRequest, JobStatus, Scheduler, When, WorkerConfig};
use scheduler_tests::setup::{fast_worker, probe_job, producer, wait_status, worker, worker_with};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, Probe, RedisServer};

#[tokio::test]
async fn bad_input_is_refused_before_redis_is_touched() {
    let server = RedisServer::start();
    let ns = namespace("input");
    let p = Scheduler::builder(server.url())
        .namespace(&ns)
        .max_payload_bytes(1024)
        .producer_only()
        .start()
        .await
        .unwrap();
    // Start-up wrote only the registry of function libraries (server-wide).
    let started = server.cli(&["DBSIZE"]).unwrap();
    for bad in ["", "a{b}", "tab\there", &"x".repeat(300)] {
        let err = p.enqueue(probe_job(bad, "x")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidJobId { .. }), "{bad:?}: {err}");
    }
    let big = JobRequest::<ProbeTask>::new(ProbeArgs::new(&"x".repeat(2000))).id("big");
    assert!(
        matches!(p.enqueue(big).await.unwrap_err(), Error::PayloadTooLarge { size, limit: 1024 } if size > 2000)
    );
    assert_eq!(server.cli(&["DBSIZE"]).unwrap(), started);
    p.close().await;
}

#[tokio::test]
async fn start_up_fails_on_missing_dependencies_and_unreachable_redis() {
    let server = RedisServer::start();
    let err = Scheduler::builder(server.url())
        .namespace(namespace("deps"))
        .register::<ProbeTask>()
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::MissingDependencies { .. }), "{text}");
    assert!(
        text.contains("task `probe`") && text.contains("Probe"),
        "{text}"
    );

    let mut gone = RedisServer::start();
    let url = gone.url();
    gone.kill();
    let err = Scheduler::builder(url)
        .command_timeout(Duration::from_millis(500))
        .producer_only()
        .start()
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn garbage_in_redis_is_dead_lettered_and_the_worker_goes_on() {
    let server = RedisServer::start();
    let probe = Probe::default();
    let ns = namespace("garbage");
    let key = |k: &str| format!("{{{ns}}}:{k}");
    // A record that is not msgpack, an index entry without a record, a payload of the wrong shape.
    server
        .cli(&["HSET", &key("pending"), "junk", "\u{1}not msgpack"])
        .unwrap();
    server.cli(&["ZADD", &key("due"), "0", "junk"]).unwrap();
    server.cli(&["ZADD", &key("due"), "0", "orphan"]).unwrap();
    let p = producer(&server.url(), &ns).await;
    p.enqueue_untyped(
        "probe",
        Some("shape"),
        &serde_json::json!([1, 2, 3]),
        When::Now,
    )
    .await
    .unwrap();
    let s = worker(&server.url(), &ns, &probe).await;
    s.enqueue(probe_job("fine", "ok")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    assert_eq!(
        wait_status(&s, "shape", |st| *st == JobStatus::Failed).await,
        JobStatus::Failed
    );
    let dead = s.dead_letters(0, 10).await.unwrap();
    let reason = |id: &str| {
        dead.iter()
            .find(|d| d.job_id == id)
            .map(|d| d.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason("junk").contains("corrupt job record"), "{dead:?}");
    assert!(reason("orphan").contains("record is missing"), "{dead:?}");
    assert!(reason("shape").contains("could not be decoded"), "{dead:?}");
    assert_eq!(probe.runs_of("fine").len(), 1);
    assert!(s.health().is_healthy());
    s.close().await;
    p.close().await;
}

#[tokio::test]
async fn the_worker_resumes_after_redis_restarts_and_reloads_its_scripts() {
    let mut server = RedisServer::start();
    let probe = Probe::default();
    let ns = namespace("restart");
    let s = worker(&server.url(), &ns, &probe).await;
    s.enqueue(probe_job("before", "x")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    server.restart(); // no persistence: scripts and data are gone
                      // Enqueue retries through the reconnect; the script cache is rebuilt on NOSCRIPT.
    let mut enqueued = false;
    for _ in 0..100 {
        if s.enqueue(probe_job("after", "y")).await.is_ok() {
            enqueued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(enqueued);
    assert!(
        probe.wait_finished(2, Duration::from_secs(15)).await,
        "the worker did not resume"
    );
    // The restart lost the namespace's data (generation 1 went back to 0):
    // health reports that loss instead of returning to healthy at once.
    let health = s.health();
    assert!(
        matches!(&health, scheduler::Health::Degraded { reason, .. } if reason.contains("redis restarted empty")),
        "{health:?}"
    );
    s.close().await;
}

#[tokio::test]
async fn a_producer_reports_its_own_health() {
    let mut server = RedisServer::start();
    let p = Scheduler::builder(server.url())
        .namespace(namespace("producer-health"))
        .command_timeout(Duration::from_millis(500))
        .producer_only()
        .start()
        .await
        .unwrap();
    assert!(p.health().is_healthy());
    server.kill();
    let err = p
        .enqueue_untyped("t", Some("a"), &serde_json::json!(1), When::Now)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !p.health().is_healthy(),
        "a failed call degrades the producer's health"
    );
    server.restart();
    let mut ok = false;
    for _ in 0..50 {
        if p.enqueue_untyped("t", Some("b"), &serde_json::json!(1), When::Now)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok);
    // The restarted server is empty but this producer never saw a job: no data-loss alert.
    assert!(p.health().is_healthy(), "{:?}", p.health());
    p.close().await;
}

/// Runs one of the scheduler's Lua scripts (with `common.lua`) through
/// `redis-cli EVAL`, with the namespace `{resend}`; the reply's lines.
fn eval_script(server: &RedisServer, body: &str, args: &[&str]) -> Vec<String> {
    let script = format!(
        "{}\nbind(KEYS)\nlocal function body(KEYS, ARGV)\n{}\nend\nreturn body(KEYS, ARGV)",
        include_str!("../../scheduler/src/backend/redis/scripts/common.lua"),
        body
    );
    let keys = [
        "due",
        "pending",
        "active",
        "leases",
        "results",
        "results_exp",
        "dead",
        "dead_order",
        "seq",
        "claim_log",
        "claim_exp",
        "schedules",
        "listeners",
    ]
    .map(|k| format!("{{resend}}:{k}"));
    let mut cli = vec!["EVAL", script.as_str(), "13"];
    cli.extend(keys.iter().map(String::as_str));
    cli.extend(args);
    server
        .cli(&cli)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

const ENQUEUE: &str = include_str!("../../scheduler/src/backend/redis/scripts/enqueue.lua");

/// One enqueue of a job (task `t`, one argument) with this nonce.
fn enqueue_job(server: &RedisServer, id: &str, when: (&str, &str), nonce: &str) -> Vec<String> {
    let header = [
        "enqueue",
        "keep",
        "{resend}:wake",
        "{resend}:abort",
        "100",
        "",
    ];
    let job = [id, "t", "[1]", "3", when.0, when.1, nonce, "0"];
    let args: Vec<&str> = header.iter().chain(job.iter()).copied().collect();
    eval_script(server, ENQUEUE, &args)
}

/// One enqueue of job-1 with this nonce.
fn enqueue_job_1(server: &RedisServer, when: (&str, &str), nonce: &str) -> Vec<String> {
    enqueue_job(server, "job-1", when, nonce)
}

/// The enqueue script recognises a request sent again (a client that
/// reconnected after losing the reply re-sends the same arguments, nonce
/// included): it answers "enqueued" with the first generation, creates no
/// second job, and a different request for the id is still a duplicate.
#[test]
fn an_enqueue_sent_twice_is_one_job_and_answers_enqueued_both_times() {
    let server = RedisServer::start();
    let later = ("after", "60000");
    let first = enqueue_job_1(&server, later, "AbCd1234");
    let again = enqueue_job_1(&server, later, "AbCd1234");
    let other = enqueue_job_1(&server, later, "zzzz9999");
    assert_eq!(first[0], "enqueued", "{first:?}");
    assert_eq!(again[0], "enqueued", "the re-sent request: {again:?}");
    assert_eq!(again[1], first[1], "same generation");
    assert_eq!(other[0], "duplicate", "{other:?}");
    assert_eq!(other[1], first[1]);
    assert_eq!(
        server.cli(&["HLEN", "{resend}:pending"]).unwrap().trim(),
        "1"
    );
    assert_eq!(server.cli(&["GET", "{resend}:seq"]).unwrap().trim(), "1");
}

/// The same, when the re-sent request arrives after its job already ran: the
/// outcome record keeps the request's nonce, so the re-send answers "enqueued"
/// with the finished job's generation instead of running the job a second time.
/// A new request (another nonce) then creates the next job, as the id is free.
#[test]
fn an_enqueue_re_sent_after_its_job_finished_does_not_run_it_again() {
    let server = RedisServer::start();
    let now = ("now", "0");
    let first = enqueue_job_1(&server, now, "AbCd1234");
    assert_eq!(first[..2], ["enqueued", "1"], "{first:?}");
    let claim = eval_script(
        &server,
        include_str!("../../scheduler/src/backend/redis/scripts/claim.lua"),
        &["w1", "10", "30000", "3600000", "100", "claim-1", "0"],
    );
    assert!(claim.iter().any(|l| l == "job-1"), "claimed: {claim:?}");
    let complete = eval_script(
        &server,
        include_str!("../../scheduler/src/backend/redis/scripts/complete.lua"),
        &[
            "3600000",
            "100",
            "{resend}:wake",
            "job-1",
            "1",
            "1",
            "ok",
            "null",
            "0",
        ],
    );
    assert_eq!(complete, ["completed"]);
    let again = enqueue_job_1(&server, now, "AbCd1234");
    assert_eq!(
        again[..2],
        ["enqueued", "1"],
        "the re-sent request: {again:?}"
    );
    assert_eq!(server.cli(&["GET", "{resend}:seq"]).unwrap().trim(), "1");
    assert_eq!(
        server.cli(&["HLEN", "{resend}:pending"]).unwrap().trim(),
        "0",
        "no second job"
    );
    let next = enqueue_job_1(&server, now, "zzzz9999");
    assert_eq!(next[..2], ["enqueued", "2"], "a new request: {next:?}");
}

const CLAIM: &str = include_str!("../../scheduler/src/backend/redis/scripts/claim.lua");
const COMPLETE: &str = include_str!("../../scheduler/src/backend/redis/scripts/complete.lua");
const RENEW: &str = include_str!("../../scheduler/src/backend/redis/scripts/renew.lua");

/// A claim of up to 10 jobs with a lease of 1 s.
fn claim_1s(server: &RedisServer, worker: &str, nonce: &str) -> Vec<String> {
    eval_script(
        server,
        CLAIM,
        &[worker, "10", "1000", "3600000", "100", nonce, "0"],
    )
}

/// A running job's lease is its worker's, renewed for all its jobs at once.
/// A job the worker gave up ('abandon': it stopped the job when it could
/// not confirm the lease in time) keeps the lease it had, and no more: it
/// expires when that runs out, although the worker lives on and renews its
/// other job; no other worker takes it sooner, or takes the other job.
#[test]
fn a_job_its_worker_gave_up_expires_with_the_lease_it_had_while_the_worker_renews_others() {
    let server = RedisServer::start();
    for id in ["given-up", "kept"] {
        assert_eq!(enqueue_job(&server, id, ("now", "0"), id)[0], "enqueued");
    }
    let claimed_at = Instant::now();
    let first = claim_1s(&server, "w1", "c1");
    for id in ["given-up", "kept"] {
        assert!(first.iter().any(|l| l == id), "{id} not claimed: {first:?}");
    }
    let abandon = |generation: &str, attempt: &str| {
        eval_script(
            &server,
            COMPLETE,
            &[
                "3600000",
                "100",
                "{resend}:wake",
                "given-up",
                generation,
                attempt,
                "abandon",
                "",
                "0",
            ],
        )
    };
    assert_eq!(abandon("1", "1"), ["abandoned"]);
    // Sent again: the same answer; for another attempt: stale.
    assert_eq!(abandon("1", "1"), ["abandoned"]);
    assert_eq!(abandon("1", "2"), ["stale"]);

    let mut taken_after = None;
    for round in 0..40 {
        let renewed = eval_script(&server, RENEW, &["1000", "w1", "100", "kept", "2", "1"]);
        assert_eq!(renewed, ["ok"], "round {round}");
        let other = claim_1s(&server, "w2", &format!("c2-{round}"));
        assert!(
            !other.iter().any(|l| l == "kept"),
            "round {round}: {other:?}"
        );
        if other.iter().any(|l| l == "given-up") {
            taken_after = Some(claimed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let taken_after = taken_after.expect("the job given up was never taken by another worker");
    // Its lease ran from the claim for 1 s (Redis time; the claim was sent after claimed_at).
    assert!(
        taken_after >= Duration::from_millis(1000),
        "{taken_after:?}"
    );
    assert!(taken_after < Duration::from_millis(2500), "{taken_after:?}");
}

/// A job asked for at an instant never starts before it, also when a claim
/// made for an earlier job runs a fraction of a millisecond before it: pairs
/// of jobs 0.3 to 1.8 ms apart, the worker woken for the first of each pair.
/// (A claim comparing due times with Redis time rounded up, or a millisecond
/// ahead, takes the second job of a pair early.)
#[tokio::test]
async fn a_job_due_a_fraction_of_a_millisecond_after_a_claim_waits_for_its_instant() {
    let server = RedisServer::start();
    let ns = namespace("instant");
    let probe = Probe::default();
    let w = worker(&server.url(), &ns, &probe).await;
    let base = chrono::Utc::now() + chrono::TimeDelta::milliseconds(500);
    let mut ats = Vec::new();
    for pair in 0..20i64 {
        let first = base + chrono::TimeDelta::milliseconds(20 * pair);
        let second = first + chrono::TimeDelta::microseconds(300 + 75 * pair);
        for (k, at) in [first, second].into_iter().enumerate() {
            let id = format!("p{pair}-{k}");
            w.enqueue(probe_job(&id, "x").at(at)).await.unwrap();
            ats.push((id, at));
        }
    }
    assert!(probe.wait_finished(40, Duration::from_secs(10)).await);
    each_ran_once_not_before(&probe, &ats);
    w.close().await;
}

/// Each job ran once, and did not start before its instant.
fn each_ran_once_not_before(probe: &Probe, earliest: &[(String, chrono::DateTime<chrono::Utc>)]) {
    for (id, at) in earliest {
        let run = probe.runs_of(id);
        assert_eq!(run.len(), 1, "{id}: {run:?}");
        assert!(
            run[0].start >= *at,
            "{id} started {} before {at}",
            *at - run[0].start
        );
    }
}

/// A job deferred by a delay is due that long after the call by the Redis
/// clock, to the microsecond, never before, whichever call sets it (enqueue,
/// replace, reschedule). Each call notes the local clock (the one Redis reads)
/// before it is sent and after its reply: the due time Redis keeps lies between
/// those instants plus the delay, and the job does not start before the first.
/// (Counting the delay from Redis time rounded down to the millisecond keeps
/// most of these due times up to 1 ms early.)
#[tokio::test]
async fn a_job_deferred_by_a_delay_is_due_that_long_after_the_call_to_the_microsecond() {
    let server = RedisServer::start();
    let ns = namespace("delay");
    let probe = Probe::default();
    let w = worker(&server.url(), &ns, &probe).await;
    let us = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    let mut earliest = Vec::new();
    for k in 0..30u64 {
        let id = format!("d{k}");
        let delay = Duration::from_millis(300 + 7 * k);
        // A third of the jobs are placed by `replace`, a third moved by
        // `reschedule`, a third by `enqueue`.
        if k % 3 < 2 {
            let later = probe_job(&id, "x").when(When::After(Duration::from_secs(3600)));
            w.enqueue(later).await.unwrap();
        }
        let sent = chrono::Utc::now();
        let request = probe_job(&id, "x").when(When::After(delay));
        match k % 3 {
            0 => drop(w.replace(request, IfRunning::Keep).await.unwrap()),
            1 => drop(w.reschedule(&id, When::After(delay)).await.unwrap()),
            _ => drop(w.enqueue(request).await.unwrap()),
        }
        let answered = chrono::Utc::now();
        let score = server.cli(&["ZSCORE", &format!("{{{ns}}}:due"), &id]);
        let due_us = (score.unwrap().trim().parse::<f64>().unwrap() * 1000.0).round() as i64;
        let delay_us = delay.as_micros() as i64;
        assert!(
            (us(sent) + delay_us..=us(answered) + delay_us).contains(&due_us),
            "{id}: due {} µs after the call was sent (delay {delay_us} µs, reply after {} µs)",
            due_us - us(sent),
            us(answered) - us(sent)
        );
        earliest.push((id, sent + chrono::TimeDelta::from_std(delay).unwrap()));
    }
    assert!(probe.wait_finished(30, Duration::from_secs(10)).await);
    each_ran_once_not_before(&probe, &earliest);
    w.close().await;
}

/// A namespace stored in a layout newer than this version reads (a rollback
/// past a change of the stored layout) is refused at start with a typed
/// error, before anything of the namespace is read or written; the layout
/// this version writes starts as before.
#[tokio::test]
async fn a_namespace_stored_in_a_newer_layout_is_refused_at_start() {
    let server = RedisServer::start();
    let ns = namespace("layout");
    let key = format!("{{{ns}}}:layout");
    server.cli(&["SET", &key, "2"]).unwrap();
    let probe = Probe::default();
    let refused = Scheduler::builder(server.url())
        .namespace(&ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(Default::default())
        .start()
        .await;
    let Err(err) = refused else {
        panic!("a worker started on layout 2");
    };
    assert!(
        matches!(
            &err,
            Error::NewerLayout {
                stored: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("run a newer version"), "{err}");
    let keys = server
        .cli(&["--scan", "--pattern", &format!("{{{ns}}}:*")])
        .unwrap();
    assert_eq!(keys.trim(), key, "only the layout key: {keys}");

    server.cli(&["SET", &key, "1"]).unwrap();
    let s = producer(&server.url(), &ns).await;
    s.enqueue(probe_job("after", "x")).await.unwrap();
    s.close().await;
}

/// A namespace moved to a newer layout while a worker runs on it: at its next
/// audit the worker stops claiming and reports itself broken, rather than
/// read jobs stored in a layout it does not know.
#[tokio::test]
async fn a_worker_stops_claiming_when_its_namespace_moves_to_a_newer_layout() {
    let server = RedisServer::start();
    let ns = namespace("layout-moved");
    let probe = Probe::default();
    let config = WorkerConfig {
        audit_interval: Duration::from_millis(200),
        ..fast_worker()
    };
    let w = worker_with(&server.url(), &ns, &probe, config).await;
    w.enqueue(probe_job("before", "x")).await.unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(5)).await);
    server
        .cli(&["SET", &format!("{{{ns}}}:layout"), "2"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        if let Health::Degraded { reason, .. } = w.health() {
            break reason;
        }
        assert!(Instant::now() < deadline, "the worker went on as healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        reason.contains("layout 2") && reason.contains("claims no more jobs"),
        "{reason}"
    );
    w.enqueue(probe_job("after", "x")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(probe.finished(), 1, "a job ran after the layout moved");
    w.close().await;
}
