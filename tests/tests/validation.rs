//! Records planted in Redis behind the scheduler's back, field by field (issue
//! 14): every field of a job record is checked where it is read, a bad record
//! is dead-lettered with a reason naming the field, and the rest of its batch
//! runs; a record written by an older version is honoured, never run early.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use scheduler::{JobRequest, JobStatus, Scheduler};
use scheduler_tests::setup::{probe_job, producer, wait_status};
use scheduler_tests::tasks::{ProbeArgs, ProbeTask};
use scheduler_tests::{namespace, Probe, RedisServer};

async fn worker(server: &RedisServer, ns: &str, probe: &Probe) -> Scheduler {
    scheduler_tests::setup::worker(&server.url(), ns, probe).await
}

/// Runs `body` as a script over the namespace's keys, with `now` (Redis
/// time, ms) and `P` (a probe payload) defined, the job id in `ID`, and
/// `pack(rec)` packing a record whose absent inner fields are `false`.
/// Returns what the script returns, as text.
fn run_lua(server: &RedisServer, ns: &str, id: &str, body: &str) -> String {
    let script = format!(
        r#"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local ID, P = ARGV[1], '{{"arg":"planted"}}'
        local PENDING, DUE, ACTIVE = KEYS[1], KEYS[2], KEYS[3]
        local function pack(rec) return cmsgpack.pack(rec) end
        {body}
        "#
    );
    let keys = ["pending", "due", "active"].map(|k| format!("{{{ns}}}:{k}"));
    server
        .cli(&["EVAL", &script, "3", &keys[0], &keys[1], &keys[2], id])
        .unwrap_or_else(|| panic!("script for {id} failed"))
        .trim()
        .to_string()
}

/// Plants a pending job record (a Lua table expression) due at `score`.
fn plant(server: &RedisServer, ns: &str, id: &str, record: &str, score: &str) {
    let body = format!(
        "redis.call('HSET', PENDING, ID, pack({record}))\n\
         redis.call('ZADD', DUE, {score}, ID)\n\
         return 1"
    );
    assert_eq!(run_lua(server, ns, id, &body), "1", "planting {id}");
}

async fn dead_reasons(s: &Scheduler, ids: &[&str]) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dead = s.dead_letters(0, 100).await.unwrap();
        let all_there = ids.iter().all(|id| dead.iter().any(|d| d.job_id == *id));
        if all_there || tokio::time::Instant::now() > deadline {
            return dead.into_iter().map(|d| (d.job_id, d.reason)).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_record_with_any_bad_field_is_dead_lettered_and_the_rest_of_its_batch_runs() {
    let server = RedisServer::start();
    let ns = namespace("fields");
    // Each bad in one field only (the fields of common.lua), all due before
    // the good jobs, so that one claim takes bad and good ones together.
    let bad = [
        (
            "no-enqueued",
            "{'probe', P, 100001, 0, 3}",
            "enqueued_ms is not a number (field 6 is missing)",
        ),
        (
            "nonce-number",
            "{'probe', P, 100002, 0, 3, 0, 42}",
            "nonce is not a string (field 7 is a number)",
        ),
        (
            "error-number",
            "{'probe', P, 100003, 0, 3, 0, 'n', 7}",
            "last error is not a string (field 8 is a number)",
        ),
        (
            "run-at-string",
            "{'probe', P, 100004, 0, 3, 0, 'n', false, 'soon'}",
            "run_at is not a number (field 9 is a string)",
        ),
        (
            "worker-number",
            "{'probe', P, 100005, 0, 3, 0, 'n', false, false, false, 5}",
            "worker is not a string (field 11 is a number)",
        ),
        (
            "cancel-boolean",
            "{'probe', P, 100006, 0, 3, 0, 'n', false, false, false, false, true}",
            "cancel requested is not a number (field 12 is a boolean)",
        ),
        (
            "blocked-string",
            "{'probe', P, 100007, 0, 3, 0, 'n', false, false, false, false, false, 'later'}",
            "blocked run_at is not a number (field 13 is a string)",
        ),
        (
            "waits-table",
            "{'probe', P, 100008, 0, 3, 0, 'n', false, false, false, false, false, false, {1}}",
            "replacement waits is not a number (field 14 is a table)",
        ),
        (
            "queue-number",
            "{'probe', P, 100009, 0, 3, 0, 'n', false, false, false, false, false, false, false, false, false, 7}",
            "queue is not a string (field 17 is a number)",
        ),
        (
            "priority-string",
            "{'probe', P, 100010, 0, 3, 0, 'n', false, false, false, false, false, false, false, false, false, false, 'high'}",
            "priority is not a number (field 18 is a string)",
        ),
        (
            "limit-key-table",
            "{'probe', P, 100011, 0, 3, 0, 'n', false, false, false, false, false, false, false, false, false, false, false, {1}}",
            "limit key is not a string (field 19 is a table)",
        ),
    ];
    for (id, record, _) in bad {
        plant(&server, &ns, id, record, "0");
    }
    let p = producer(&server.url(), &ns).await;
    let good: Vec<String> = (0..5).map(|i| format!("good-{i}")).collect();
    for id in &good {
        p.enqueue(probe_job(id, id)).await.unwrap();
    }
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    assert!(
        probe
            .wait_finished(good.len(), Duration::from_secs(10))
            .await,
        "{:#?}",
        probe.runs()
    );
    // Each good job ran once, at its first attempt.
    for id in &good {
        let runs = probe.runs_of(id);
        assert_eq!(runs.len(), 1, "{id}: {runs:#?}");
        assert_eq!(runs[0].attempt, 1, "{id}: {runs:#?}");
        assert_eq!(s.status(id).await.unwrap(), JobStatus::Completed, "{id}");
    }
    let ids: Vec<&str> = bad.iter().map(|(id, _, _)| *id).collect();
    let dead = dead_reasons(&s, &ids).await;
    for (id, _, words) in bad {
        let reason = dead
            .iter()
            .find(|(d, _)| d == id)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{id} not dead-lettered: {dead:#?}"));
        assert!(reason.contains(words), "{id}: {reason:?}");
        assert!(probe.runs_of(id).is_empty(), "{id} ran");
    }
    assert!(s.health().is_healthy(), "{:?}", s.health());
    s.close().await;
    p.close().await;
}

#[tokio::test]
async fn a_waiting_replacement_with_a_bad_field_13_neither_blocks_the_running_jobs_outcome_nor_runs(
) {
    let server = RedisServer::start();
    let ns = namespace("field13");
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    s.enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(800)).id("long"))
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    // A replacement waits for the running job (field 14 of the running
    // record), and its own field 13 is not a time.
    let body = "local rec = cmsgpack.unpack(redis.call('HGET', ACTIVE, ID))\n\
                for i = 1, 13 do if rec[i] == nil then rec[i] = false end end\n\
                rec[14] = 1\n\
                redis.call('HSET', ACTIVE, ID, pack(rec))\n\
                redis.call('HSET', PENDING, ID, pack({'probe', P, 100100, 0, 3, now, 'n', false, false, false, false, false, 'later'}))\n\
                redis.call('ZADD', DUE, now + 60000, ID)\n\
                return 1";
    assert_eq!(run_lua(&server, &ns, "long", body), "1");
    // The running job's outcome is recorded (before, recording it raised a
    // Lua error, retried forever), and the bad replacement is dead-lettered
    // with its reason, unrun: its failure is the id's last outcome.
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let dead = dead_reasons(&s, &["long"]).await;
    let reason = dead
        .iter()
        .find(|(id, _)| id == "long")
        .map(|(_, r)| r.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("blocked run_at is not a number (field 13 is a string)"),
        "{dead:#?}"
    );
    let info = s.info("long").await.unwrap().unwrap();
    assert_eq!(info.status, JobStatus::Failed, "{info:#?}");
    assert_eq!(info.last_error.as_deref(), Some(reason.as_str()));
    assert_eq!(probe.runs().len(), 1);
    // The worker goes on.
    s.enqueue(probe_job("after", "after")).await.unwrap();
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    assert!(s.health().is_healthy(), "{:?}", s.health());
    s.close().await;
}

#[tokio::test]
async fn a_waiting_replacement_without_the_waits_flag_never_starts_before_its_own_time() {
    let server = RedisServer::start();
    let ns = namespace("noflag");
    // As an older version left it: the replacement is due at the old run's
    // lease expiry (past), its own time (field 13) is 1.5 s ahead, and the
    // run it waited for has ended without releasing it (no field 14).
    let body = "local own = now + 1500\n\
                redis.call('HSET', PENDING, ID, pack({'probe', P, 100200, 0, 3, now, 'n', false, false, false, false, false, own}))\n\
                redis.call('ZADD', DUE, now - 10, ID)\n\
                return own";
    let own_ms: i64 = run_lua(&server, &ns, "late", body).parse().unwrap();
    let probe = Probe::default();
    let s = worker(&server, &ns, &probe).await;
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    let run = &probe.runs_of("late")[0];
    assert!(
        run.start.timestamp_millis() >= own_ms,
        "started {} ms before its own time: {run:#?}",
        own_ms - run.start.timestamp_millis()
    );
    assert_eq!(run.attempt, 1);
    let status = wait_status(&s, "late", |st| *st == JobStatus::Completed).await;
    assert_eq!(status, JobStatus::Completed);
    s.close().await;
}

#[tokio::test]
async fn a_cancel_in_one_database_never_aborts_a_job_of_another_database() {
    let server = RedisServer::start();
    // Two deployments: one namespace in databases 0 and 1 of one server.
    let ns = namespace("databases");
    let (probe0, probe1) = (Probe::default(), Probe::default());
    // Idle workers sleep up to a minute: a job starts at once only if its
    // wake reaches them on their own database's channel.
    let sleepy = scheduler::WorkerConfig {
        max_idle: Duration::from_secs(60),
        ..scheduler_tests::setup::fast_worker()
    };
    let start = |db: u32, probe: &Probe| {
        let url = format!("{}/{db}", server.url());
        let (ns, probe, sleepy) = (ns.clone(), probe.clone(), sleepy.clone());
        async move { scheduler_tests::setup::worker_with(&url, &ns, &probe, sleepy).await }
    };
    let s0 = start(0, &probe0).await;
    let s1 = start(1, &probe1).await;
    // Let both workers go idle (their first claims found nothing).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same id, and the same generation (each database counts its own).
    let long = || JobRequest::<ProbeTask>::new(ProbeArgs::new("long").sleep(1500)).id("x");
    for s in [&s0, &s1] {
        let out = s.enqueue(long()).await.unwrap();
        assert!(
            matches!(
                out,
                scheduler::EnqueueOutcome::Enqueued { generation: 1, .. }
            ),
            "{out:?}"
        );
    }
    assert!(probe0.wait_started(1, Duration::from_secs(10)).await);
    assert!(probe1.wait_started(1, Duration::from_secs(10)).await);
    let out = s1.cancel("x").await.unwrap();
    assert_eq!(
        out,
        scheduler::CancelOutcome::AbortSignalled {
            generation: 1,
            removed_successor: None,
        }
    );
    let cancelled = wait_status(&s1, "x", |st| *st == JobStatus::Cancelled).await;
    assert_eq!(cancelled, JobStatus::Cancelled);
    // Database 0's job ran to its end.
    let done = wait_status(&s0, "x", |st| {
        matches!(st, JobStatus::Completed | JobStatus::Cancelled)
    })
    .await;
    assert_eq!(done, JobStatus::Completed, "{:#?}", probe0.runs());
    assert!(probe0.runs()[0].end.is_some());
    // Each database's wake reaches its own idle worker (else: a minute).
    for (s, probe) in [(&s0, &probe0), (&s1, &probe1)] {
        s.enqueue(probe_job("y", "y")).await.unwrap();
        let ran = scheduler_tests::wait_until(Duration::from_secs(5), || {
            probe.runs_of("y").iter().any(|r| r.end.is_some())
        })
        .await;
        assert!(ran, "{:#?}", probe.runs());
    }
    s0.close().await;
    s1.close().await;
}
