//! Queues, priorities and concurrency limits, on both backends: a worker
//! claims only the queues it serves, higher priorities first, never more
//! running jobs of a task (or of one key) than its limit, and a job whose
//! slot or worker is missing waits without using an attempt.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use scheduler::{CancelOutcome, JobRequest, JobStatus, Queues, Scheduler, Waiting, WorkerConfig};
use scheduler_tests::setup::{fast_worker, wait_status};
use scheduler_tests::tasks::{
    EmailProbe, LateProbe, LimitedProbe, ProbeArgs, ProbeTask, RatedProbe,
};
use scheduler_tests::{conformance, namespace, Execution, Fixture, Probe};

conformance!(
    a_worker_claims_only_the_queues_it_serves,
    among_due_jobs_a_higher_priority_is_claimed_first,
    a_task_limit_holds_across_workers_and_waiting_uses_no_attempt,
    a_key_limit_runs_one_job_per_key_at_a_time,
    a_cancelled_running_job_frees_its_slot_at_once,
    a_job_whose_task_no_worker_runs_waits_then_runs_on_one_that_does,
    a_waiting_job_can_be_cancelled_moved_and_listed,
    a_rate_limited_task_never_exceeds_its_budget_in_any_window,
    ids_stay_global_across_queues_and_replace_moves_a_job_between_priorities,
);

// Limits hold across the shards of a sharded namespace (their counts live in
// its home shard): the same behaviours, there. (Priorities order the claims
// within a shard; a worker visits the shards in turn.)
scheduler_tests::sharded_conformance!(
    a_worker_claims_only_the_queues_it_serves,
    a_task_limit_holds_across_workers_and_waiting_uses_no_attempt,
    a_key_limit_runs_one_job_per_key_at_a_time,
    a_cancelled_running_job_frees_its_slot_at_once,
    a_job_whose_task_no_worker_runs_waits_then_runs_on_one_that_does,
    a_waiting_job_can_be_cancelled_moved_and_listed,
    a_rate_limited_task_never_exceeds_its_budget_in_any_window,
    ids_stay_global_across_queues_and_replace_moves_a_job_between_priorities,
);

/// A worker of `ns` with the probe tasks (and these), serving `queues`.
async fn worker_of(fx: &Fixture, ns: &str, probe: &Probe, queues: Queues, late: bool) -> Scheduler {
    scheduler_tests::init_tracing();
    let mut builder = fx
        .builder()
        .namespace(ns)
        .register::<ProbeTask>()
        .register::<EmailProbe>()
        .register::<LimitedProbe>()
        .register::<RatedProbe>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            queues,
            ..fast_worker()
        });
    if late {
        builder = builder.register::<LateProbe>();
    }
    builder.start().await.expect("worker starts")
}

async fn producer_of(fx: &Fixture, ns: &str) -> Scheduler {
    fx.builder()
        .namespace(ns)
        .register::<ProbeTask>()
        .register::<EmailProbe>()
        .register::<LimitedProbe>()
        .register::<LateProbe>()
        .register::<RatedProbe>()
        .producer_only()
        .start()
        .await
        .expect("producer starts")
}

fn sleeping(arg: &str, ms: u64) -> ProbeArgs {
    ProbeArgs {
        sleep_ms: ms,
        ..ProbeArgs::new(arg)
    }
}

/// The most executions that overlapped in time, among those `runs` that
/// `select` picks.
fn max_overlap(runs: &[Execution], select: impl Fn(&Execution) -> bool) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for run in runs.iter().filter(|r| select(r)) {
        edges.push((run.start, 1));
        edges.push((run.end.unwrap_or(DateTime::<Utc>::MAX_UTC), -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort_by_key(|(t, delta)| (*t, *delta));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

async fn a_worker_claims_only_the_queues_it_serves(fx: Fixture) {
    let ns = namespace("queues");
    let producer = producer_of(&fx, &ns).await;
    let probe = Probe::default();
    let defaults = worker_of(&fx, &ns, &probe, Queues::strict(["default"]), false).await;
    producer
        .enqueue(JobRequest::<EmailProbe>::new(ProbeArgs::new("mail")).id("mail"))
        .await
        .unwrap();
    producer
        .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("plain")).id("plain"))
        .await
        .unwrap();
    assert!(probe.wait_finished(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        probe.runs_of("mail").len(),
        0,
        "a worker of `default` ran an `emails` job"
    );
    let info = producer.info("mail").await.unwrap().unwrap();
    assert!(matches!(info.status, JobStatus::Queued { .. }), "{info:?}");
    assert_eq!(info.queue.as_deref(), Some("emails"));
    assert_eq!(info.waiting, None);
    assert_eq!(info.attempts, 0);
    // The queue overview: the e-mail waits in a queue nobody serves.
    let queue = |name: &'static str| {
        let producer = producer.clone();
        async move {
            producer
                .queues()
                .await
                .unwrap()
                .into_iter()
                .find(|q| q.name == name)
                .unwrap_or_else(|| panic!("queue {name} listed"))
        }
    };
    let emails = queue("emails").await;
    assert_eq!((emails.queued, emails.workers), (1, 0), "{emails:?}");
    assert_eq!(queue("default").await.workers, 1);
    // Listed by queue.
    let of = |queue: &str| scheduler::JobQuery::new(scheduler::ListState::Queued).queue(queue);
    let emails = producer.list(&of("emails")).await.unwrap();
    assert_eq!(
        emails
            .jobs
            .iter()
            .map(|j| j.job_id.as_str())
            .collect::<Vec<_>>(),
        ["mail"]
    );
    assert!(producer.list(&of("default")).await.unwrap().jobs.is_empty());
    // (A finished job's outcome does not keep its queue.)
    assert_eq!(producer.info("plain").await.unwrap().unwrap().queue, None);

    let mails = worker_of(&fx, &ns, &probe, Queues::strict(["emails"]), false).await;
    assert_eq!(
        wait_status(&producer, "mail", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(probe.runs_of("mail").len(), 1);
    let emails = queue("emails").await;
    assert_eq!((emails.queued, emails.workers), (0, 1), "{emails:?}");
    // A worker that closes withdraws at once.
    mails.close().await;
    assert_eq!(queue("emails").await.workers, 0);
    for s in [defaults, producer] {
        s.close().await;
    }
}

async fn among_due_jobs_a_higher_priority_is_claimed_first(fx: Fixture) {
    let ns = namespace("priorities");
    let producer = producer_of(&fx, &ns).await;
    // Enqueued oldest first: low, then normal, then high priority.
    let mut requests = Vec::new();
    for i in 0..3 {
        requests.push(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("low"))
                .id(format!("low-{i}"))
                .priority(-3),
        );
    }
    for i in 0..3 {
        requests
            .push(JobRequest::<ProbeTask>::new(ProbeArgs::new("normal")).id(format!("normal-{i}")));
    }
    for i in 0..3 {
        requests.push(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("high"))
                .id(format!("high-{i}"))
                .priority(5),
        );
    }
    for request in requests {
        producer.enqueue(request).await.unwrap();
    }
    assert_eq!(producer.info("high-0").await.unwrap().unwrap().priority, 5);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let probe = Probe::default();
    // One at a time, so the claim order is the run order.
    let s = fx
        .builder()
        .namespace(&ns)
        .register::<ProbeTask>()
        .provide(probe.clone())
        .worker(WorkerConfig {
            concurrency: 1,
            ..fast_worker()
        })
        .start()
        .await
        .unwrap();
    assert!(probe.wait_finished(9, Duration::from_secs(10)).await);
    let order: Vec<String> = probe.runs().into_iter().map(|r| r.arg).collect();
    assert_eq!(
        order,
        ["high", "high", "high", "normal", "normal", "normal", "low", "low", "low"],
        "claimed by priority, then run time"
    );
    s.close().await;
    producer.close().await;
}

async fn a_task_limit_holds_across_workers_and_waiting_uses_no_attempt(fx: Fixture) {
    let ns = namespace("task-limit");
    let producer = producer_of(&fx, &ns).await;
    for i in 0..8 {
        producer
            .enqueue(JobRequest::<LimitedProbe>::new(sleeping("t", 150)).id(format!("t-{i}")))
            .await
            .unwrap();
    }
    let probe = Probe::default();
    let a = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    let b = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    // While two run, the others wait for a slot, visibly.
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    let mut saw_waiting = false;
    for i in 0..8 {
        let info = producer.info(&format!("t-{i}")).await.unwrap().unwrap();
        if info.waiting == Some(Waiting::Slot { key: None }) {
            assert!(matches!(info.status, JobStatus::Queued { .. }), "{info:?}");
            assert_eq!(info.attempts, 0, "waiting used an attempt: {info:?}");
            saw_waiting = true;
        }
    }
    assert!(saw_waiting, "no job was seen waiting for a slot");
    let default = producer
        .queues()
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.name == "default")
        .unwrap();
    assert!(default.waiting > 0, "{default:?}");
    assert_eq!(default.workers, 2, "{default:?}");
    assert!(probe.wait_finished(8, Duration::from_secs(20)).await);
    let runs = probe.runs();
    assert_eq!(runs.len(), 8, "{runs:?}");
    assert!(
        runs.iter().all(|r| r.attempt == 1),
        "a limited job used more than one attempt: {runs:?}"
    );
    assert_eq!(
        max_overlap(&runs, |_| true),
        2,
        "the limit is 2 across both workers: {runs:?}"
    );
    for s in [a, b, producer] {
        s.close().await;
    }
}

async fn a_key_limit_runs_one_job_per_key_at_a_time(fx: Fixture) {
    let ns = namespace("key-limit");
    let producer = producer_of(&fx, &ns).await;
    for i in 0..6 {
        let key = if i % 2 == 0 { "user:1" } else { "user:2" };
        producer
            .enqueue(
                JobRequest::<LimitedProbe>::new(sleeping(key, 120))
                    .id(format!("k-{i}"))
                    .limit_key(key),
            )
            .await
            .unwrap();
    }
    let probe = Probe::default();
    let a = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    assert!(probe.wait_started(2, Duration::from_secs(10)).await);
    let mut saw = false;
    for i in 0..6 {
        let info = producer.info(&format!("k-{i}")).await.unwrap().unwrap();
        assert!(info.limit_key.is_some(), "{info:?}");
        if let Some(Waiting::Slot { key: Some(key) }) = &info.waiting {
            assert_eq!(Some(key), info.limit_key.as_ref());
            saw = true;
        }
    }
    assert!(saw, "no job was seen waiting for its key's slot");
    assert!(probe.wait_finished(6, Duration::from_secs(20)).await);
    let runs = probe.runs();
    for key in ["user:1", "user:2"] {
        assert_eq!(
            max_overlap(&runs, |r| r.arg == key),
            1,
            "key {key}: {runs:?}"
        );
    }
    // Both keys ran side by side: the key limit is per key.
    assert_eq!(max_overlap(&runs, |_| true), 2, "{runs:?}");
    a.close().await;
    producer.close().await;
}

async fn a_cancelled_running_job_frees_its_slot_at_once(fx: Fixture) {
    let ns = namespace("limit-cancel");
    let producer = producer_of(&fx, &ns).await;
    producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(sleeping("long", 8_000))
                .id("long")
                .limit_key("k"),
        )
        .await
        .unwrap();
    let probe = Probe::default();
    let a = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(ProbeArgs::new("next"))
                .id("next")
                .limit_key("k"),
        )
        .await
        .unwrap();
    assert_eq!(
        wait_status(&producer, "next", |s| matches!(s, JobStatus::Queued { .. })).await,
        JobStatus::Queued {
            run_at: producer
                .info("next")
                .await
                .unwrap()
                .unwrap()
                .run_at
                .unwrap()
        }
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        probe.runs_of("next").len(),
        0,
        "the key's one slot is taken"
    );
    let cancelled = producer.cancel("long").await.unwrap();
    assert!(
        matches!(cancelled, CancelOutcome::AbortSignalled { .. }),
        "{cancelled:?}"
    );
    assert_eq!(
        wait_status(&producer, "next", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed,
        "the cancelled job's slot was not given back"
    );
    // An aborting replace frees the slot at once too.
    producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(sleeping("long2", 8_000))
                .id("long2")
                .limit_key("k"),
        )
        .await
        .unwrap();
    assert!(probe.wait_started(3, Duration::from_secs(10)).await);
    producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(ProbeArgs::new("after"))
                .id("after")
                .limit_key("k"),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        probe.runs_of("after").len(),
        0,
        "the key's one slot is taken"
    );
    producer
        .replace(
            JobRequest::<LimitedProbe>::new(ProbeArgs::new("short"))
                .id("long2")
                .limit_key("other"),
            scheduler::IfRunning::Abort,
        )
        .await
        .unwrap();
    assert_eq!(
        wait_status(&producer, "after", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed,
        "the aborted job's slot was not given back"
    );
    // A limit key is checked before anything is sent.
    let bad = producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(ProbeArgs::new("x"))
                .id("bad-key")
                .limit_key(""),
        )
        .await;
    assert!(
        matches!(bad, Err(scheduler::Error::InvalidLimitKey { .. })),
        "{bad:?}"
    );
    a.close().await;
    producer.close().await;
}

async fn a_job_whose_task_no_worker_runs_waits_then_runs_on_one_that_does(fx: Fixture) {
    let ns = namespace("unserved");
    let producer = producer_of(&fx, &ns).await;
    let probe = Probe::default();
    let old = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    producer
        .enqueue(JobRequest::<LateProbe>::new(ProbeArgs::new("late")).id("late"))
        .await
        .unwrap();
    // The old worker serves `default` but cannot run the task: it waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let info = loop {
        let info = producer.info("late").await.unwrap().unwrap();
        if info.waiting.is_some() || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(info.waiting, Some(Waiting::Worker), "{info:?}");
    assert!(matches!(info.status, JobStatus::Queued { .. }), "{info:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = producer.info("late").await.unwrap().unwrap();
    assert_eq!(
        info.attempts, 0,
        "waiting for a worker used attempts: {info:?}"
    );
    assert!(producer.dead_letters(0, 10).await.unwrap().is_empty());
    assert_eq!(producer.counts().await.unwrap().queued, 1);
    // A worker that runs it (a newer deploy) takes it.
    let new = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, true).await;
    assert_eq!(
        wait_status(&producer, "late", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(producer.info("late").await.unwrap().unwrap().attempts, 1);
    for s in [old, new, producer] {
        s.close().await;
    }
}

async fn a_waiting_job_can_be_cancelled_moved_and_listed(fx: Fixture) {
    let ns = namespace("limit-ops");
    let producer = producer_of(&fx, &ns).await;
    let probe = Probe::default();
    let a = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    producer
        .enqueue(
            JobRequest::<LimitedProbe>::new(sleeping("hold", 3_000))
                .id("hold")
                .limit_key("k"),
        )
        .await
        .unwrap();
    assert!(probe.wait_started(1, Duration::from_secs(10)).await);
    for id in ["w1", "w2"] {
        producer
            .enqueue(
                JobRequest::<LimitedProbe>::new(ProbeArgs::new(id))
                    .id(id)
                    .limit_key("k"),
            )
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while producer
        .info("w2")
        .await
        .unwrap()
        .unwrap()
        .waiting
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "w2 never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Listed as queued, with what it waits for.
    let page = producer
        .list(&scheduler::JobQuery::new(scheduler::ListState::Queued))
        .await
        .unwrap();
    let listed: Vec<&str> = page.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert!(listed.contains(&"w2"), "{listed:?}");
    assert!(page.jobs.iter().any(|j| j.waiting.is_some()), "{page:?}");
    assert_eq!(producer.counts().await.unwrap().queued, 2);
    // Cancelled while it waits: it never runs.
    assert!(matches!(
        producer.cancel("w1").await.unwrap(),
        CancelOutcome::Removed { .. }
    ));
    // Moved to later while it waits: it leaves the wait and runs at its new time.
    let later = Utc::now() + chrono::TimeDelta::milliseconds(3_500);
    producer
        .reschedule("w2", scheduler::When::At(later))
        .await
        .unwrap();
    let info = producer.info("w2").await.unwrap().unwrap();
    assert!(
        matches!(info.status, JobStatus::Deferred { .. }),
        "{info:?}"
    );
    assert_eq!(info.waiting, None);
    assert_eq!(
        wait_status(&producer, "hold", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(
        wait_status(&producer, "w2", |s| *s == JobStatus::Completed).await,
        JobStatus::Completed
    );
    assert_eq!(probe.runs_of("w1").len(), 0);
    let w2 = &probe.runs_of("w2")[0];
    assert!(
        w2.start >= later - chrono::TimeDelta::milliseconds(5),
        "ran early: {w2:?}"
    );
    a.close().await;
    producer.close().await;
}

/// Whether any `n + 1` consecutive starts (ms, sorted) span at least `window_ms`:
/// no window of that length holds more than `n`.
fn within_budget(starts: &[i64], n: usize, window_ms: i64) -> bool {
    starts.windows(n + 1).all(|w| w[n] - w[0] >= window_ms)
}

async fn a_rate_limited_task_never_exceeds_its_budget_in_any_window(fx: Fixture) {
    // RatedProbe: 4 starts a second per task, 1 a second per key.
    let ns = namespace("rates");
    let producer = producer_of(&fx, &ns).await;
    let keys = ["a", "b", "c", "d", "e"];
    let mut ids = Vec::new();
    for round in 0..2 {
        for key in keys {
            let id = format!("{key}-{round}");
            producer
                .enqueue(
                    JobRequest::<RatedProbe>::new(ProbeArgs::new(key))
                        .id(&id)
                        .limit_key(key),
                )
                .await
                .unwrap();
            ids.push((id, key));
        }
    }
    let probe = Probe::default();
    let a = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    let b = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    // The fifth start waits for the task's budget, visibly, using no attempt.
    assert!(probe.wait_started(4, Duration::from_secs(10)).await);
    let mut saw = false;
    for (id, _) in &ids {
        let info = producer.info(id).await.unwrap().unwrap();
        if let Some(Waiting::Rate { .. }) = info.waiting {
            assert!(matches!(info.status, JobStatus::Queued { .. }), "{info:?}");
            assert_eq!(info.attempts, 0, "{info:?}");
            saw = true;
        }
    }
    assert!(saw, "no job was seen waiting for its rate");
    assert!(
        probe
            .wait_finished(ids.len(), Duration::from_secs(20))
            .await
    );
    // The start times the limiter saw (the backend's clock), per job.
    let mut all = Vec::new();
    let mut by_key: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for (id, key) in &ids {
        let info = producer.info(id).await.unwrap().unwrap();
        assert_eq!(info.attempts, 1, "{info:?}");
        let started = info.started_at.unwrap().timestamp_millis();
        all.push(started);
        by_key.entry(key).or_default().push(started);
    }
    all.sort();
    // On a sharded namespace a start is counted when the home shard grants
    // it, and starts on its shard one round trip later: two starts' spacing
    // differs from their grants' by the difference of those round trips.
    let window = match &fx {
        Fixture::Sharded(_) => 1000 - 50,
        _ => 1000,
    };
    assert!(
        within_budget(&all, 4, window),
        "more than 4 starts in a second: {all:?}"
    );
    for (key, starts) in &mut by_key {
        starts.sort();
        assert!(within_budget(starts, 1, window), "key {key}: {starts:?}");
    }
    // Ten jobs at 4 a second (and 2 per key): the last starts a second or more after the first.
    assert!(all[9] - all[0] >= 1000, "{all:?}");
    for s in [a, b, producer] {
        s.close().await;
    }
}

async fn ids_stay_global_across_queues_and_replace_moves_a_job_between_priorities(fx: Fixture) {
    let ns = namespace("queue-ids");
    let producer = producer_of(&fx, &ns).await;
    let first = producer
        .enqueue(JobRequest::<EmailProbe>::new(ProbeArgs::new("mail")).id("x"))
        .await
        .unwrap();
    assert!(first.is_enqueued());
    // The same id in another queue's task is a duplicate naming the holder.
    let again = producer
        .enqueue(JobRequest::<ProbeTask>::new(ProbeArgs::new("plain")).id("x"))
        .await
        .unwrap();
    assert!(
        matches!(&again, scheduler::EnqueueOutcome::Duplicate { task, .. } if task == "email_probe"),
        "{again:?}"
    );
    // A replace moves a job to another priority of its queue: one entry, at the new place.
    producer
        .enqueue(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("low"))
                .id("y")
                .priority(-1),
        )
        .await
        .unwrap();
    producer
        .replace(
            JobRequest::<ProbeTask>::new(ProbeArgs::new("high"))
                .id("y")
                .priority(7),
            scheduler::IfRunning::Abort,
        )
        .await
        .unwrap();
    let info = producer.info("y").await.unwrap().unwrap();
    assert_eq!(info.priority, 7);
    assert_eq!(
        producer.counts().await.unwrap().queued,
        2,
        "no entry left behind"
    );
    let probe = Probe::default();
    let w = worker_of(&fx, &ns, &probe, Queues::OfItsTasks, false).await;
    assert!(probe.wait_finished(2, Duration::from_secs(10)).await);
    assert_eq!(probe.runs_of("y").len(), 1);
    assert_eq!(probe.runs_of("y")[0].arg, "high");
    assert_eq!(probe.runs_of("x")[0].arg, "mail");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(probe.runs().len(), 2, "each id ran once");
    w.close().await;
    producer.close().await;
}

// Concurrency limits across worker processes, under a crash: four
// `probe-worker` processes share one namespace; one is SIGKILLed while it
// holds a slot. Every start and end is logged (by each process, on one
// machine clock), and at no instant do more jobs run than the task's limit,
// nor more of one key than the key's limit. The killed worker's slot frees
// when its lease expires, and its job runs again (attempt 2). Likewise no
// window of a rate's length holds more starts than its budget, counting
// every start the backend made (the killed one's too).
mod processes {
    use scheduler::{JobEventKind, JobRequest, Scheduler};
    use scheduler_tests::child::{ChildWorker, Event, Events};
    use scheduler_tests::tasks::{LimitedProbe, ProbeArgs, RatedProbe};
    use scheduler_tests::{namespace, wait_until, RedisServer};
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    const BIN: &str = env!("CARGO_BIN_EXE_probe-worker");
    /// `LimitedProbe`'s limits (tests/src/tasks.rs).
    const TASK_LIMIT: usize = 2;
    const KEY_LIMIT: usize = 1;
    const KEYS: [&str; 3] = ["a", "b", "c"];
    const PER_KEY: usize = 10;

    /// `rounds` jobs per key (`<key>-<round>`, the key as its limit key and
    /// argument), each sleeping `sleep_ms`, round by round.
    async fn enqueue_keyed<T>(producer: &Scheduler, keys: &[&str], rounds: usize, sleep_ms: u64)
    where
        T: scheduler::Task<Args = ProbeArgs>,
    {
        for round in 0..rounds {
            for key in keys {
                let args = ProbeArgs {
                    sleep_ms,
                    ..ProbeArgs::new(key)
                };
                producer
                    .enqueue(
                        JobRequest::<T>::new(args)
                            .id(format!("{key}-{round}"))
                            .limit_key(*key),
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// Four `probe-worker` processes (1 s lease, 300 ms heartbeat, 4 in flight each).
    async fn spawn_four(server: &RedisServer, ns: &str, events: &Events) -> Vec<ChildWorker> {
        let mut workers = Vec::new();
        for _ in 0..4 {
            workers.push(ChildWorker::spawn(BIN, &server.url(), ns, 1000, 300, 4, events).await);
        }
        workers
    }

    /// How many distinct jobs some worker process reported ending.
    fn ended_jobs(events: &Events) -> usize {
        let mut ids: Vec<String> = events
            .all()
            .into_iter()
            .filter(|e| e.event == "end")
            .map(|e| e.job_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    /// The most intervals open at one instant (an end and a start at the same
    /// microsecond do not overlap).
    fn max_overlap(intervals: &[(i64, i64)]) -> usize {
        let mut edges: Vec<(i64, i32)> = Vec::new();
        for (start, end) in intervals {
            edges.push((*start, 1));
            edges.push((*end, -1));
        }
        edges.sort();
        let (mut open, mut most) = (0, 0);
        for (_, delta) in edges {
            open += delta;
            most = most.max(open);
        }
        most as usize
    }

    #[tokio::test]
    async fn limits_hold_across_four_worker_processes_with_one_killed_holding_a_slot() {
        let server = RedisServer::start();
        let ns = namespace("limits-processes");
        let producer = Scheduler::builder(server.url())
            .namespace(&ns)
            .register::<LimitedProbe>()
            .producer_only()
            .start()
            .await
            .unwrap();
        enqueue_keyed::<LimitedProbe>(&producer, &KEYS, PER_KEY, 60).await;
        let events = Events::default();
        let mut workers = spawn_four(&server, &ns, &events).await;

        // Kill a worker while it runs a job (so while it holds a slot).
        assert!(events.wait("start", 4, Duration::from_secs(20)).await);
        let victim = kill_a_busy_worker(&events, &mut workers).await;
        let kill_t = chrono::Utc::now().timestamp_micros();

        let total = KEYS.len() * PER_KEY;
        assert!(
            wait_until(Duration::from_secs(60), || ended_jobs(&events) == total).await,
            "{} of {total} jobs ended",
            ended_jobs(&events)
        );

        // Each start's interval: to its end, or to the kill for the killed
        // worker's run (its process died there).
        let all: Vec<Event> = events.all();
        let mut ends: HashMap<(String, u32, u32), i64> = HashMap::new();
        for e in all.iter().filter(|e| e.event == "end") {
            ends.insert((e.job_id.clone(), e.attempt, e.pid), e.t);
        }
        let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
        let mut every = Vec::new();
        let mut cut_short = 0;
        for s in all.iter().filter(|e| e.event == "start") {
            let end = match ends.get(&(s.job_id.clone(), s.attempt, s.pid)) {
                Some(t) => *t,
                None => {
                    assert_eq!(
                        s.pid, victim,
                        "a run without an end on a live worker: {s:?}"
                    );
                    cut_short += 1;
                    kill_t
                }
            };
            let key = KEYS
                .iter()
                .find(|k| s.job_id.starts_with(&format!("{k}-")))
                .unwrap();
            by_key.entry(key).or_default().push((s.t, end));
            every.push((s.t, end));
        }
        assert!(cut_short >= 1, "the killed worker was running nothing");
        assert_eq!(
            max_overlap(&every),
            TASK_LIMIT,
            "the task limit, across processes"
        );
        for (key, intervals) in &by_key {
            assert_eq!(max_overlap(intervals), KEY_LIMIT, "key {key}");
        }
        // The killed run ran again, as attempt 2, on another worker.
        let rerun = all
            .iter()
            .filter(|e| e.event == "start" && e.attempt == 2)
            .count();
        assert!(rerun >= cut_short, "{all:?}");
        drop(workers);
        producer.close().await;
    }

    /// Whether any `n + 1` consecutive starts (ms, sorted) span at least `window_ms`.
    fn within_budget(starts: &[i64], n: usize, window_ms: i64) -> bool {
        starts.windows(n + 1).all(|w| w[n] - w[0] >= window_ms)
    }

    /// Kills the worker running a job (one with a start and no end yet).
    async fn kill_a_busy_worker(events: &Events, workers: &mut [ChildWorker]) -> u32 {
        loop {
            let all = events.all();
            let running = all.iter().find(|s| {
                s.event == "start"
                    && !all.iter().any(|e| {
                        e.event == "end"
                            && e.job_id == s.job_id
                            && e.attempt == s.attempt
                            && e.pid == s.pid
                    })
            });
            if let Some(start) = running {
                let index = workers.iter().position(|w| w.pid() == start.pid).unwrap();
                workers[index].kill();
                return start.pid;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn rates_hold_across_four_worker_processes_with_one_killed_mid_job() {
        // RatedProbe: 4 starts a second per task, 1 a second per key.
        let server = RedisServer::start();
        let ns = namespace("rates-processes");
        let producer = Scheduler::builder(server.url())
            .namespace(&ns)
            .register::<RatedProbe>()
            .producer_only()
            .start()
            .await
            .unwrap();
        // Every start the backend makes, with its time (Redis TIME).
        let mut stream = producer.events().await.unwrap();
        let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u32, i64)>::new()));
        let recorder = tokio::spawn({
            let starts = std::sync::Arc::clone(&starts);
            async move {
                while let Some(event) = stream.next().await {
                    let event = event.expect("no event is missed");
                    if matches!(event.kind, JobEventKind::Started { .. }) {
                        starts.lock().unwrap().push((
                            event.job_id,
                            event.attempt,
                            event.at.timestamp_millis(),
                        ));
                    }
                }
            }
        });
        // More keys than the task's budget: the per-key rates alone would allow
        // 8 starts a second, so the task's rate is what holds the total to 4.
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        enqueue_keyed::<RatedProbe>(&producer, &keys, 2, 300).await;
        let events = Events::default();
        let mut workers = spawn_four(&server, &ns, &events).await;
        assert!(events.wait("start", 2, Duration::from_secs(20)).await);
        kill_a_busy_worker(&events, &mut workers).await;
        let total = keys.len() * 2;
        assert!(
            wait_until(Duration::from_secs(60), || ended_jobs(&events) == total).await,
            "{} of {total} jobs ended",
            ended_jobs(&events)
        );
        recorder.abort();
        let starts = starts.lock().unwrap().clone();
        assert!(
            starts.iter().any(|(_, attempt, _)| *attempt == 2),
            "the killed job ran again: {starts:?}"
        );
        let mut all: Vec<i64> = starts.iter().map(|(_, _, t)| *t).collect();
        all.sort();
        assert!(
            all.len() > total,
            "every start, the killed one's too: {starts:?}"
        );
        assert!(
            within_budget(&all, 4, 1000),
            "more than 4 starts in a second: {all:?}"
        );
        for key in keys {
            let mut of_key: Vec<i64> = starts
                .iter()
                .filter(|(id, _, _)| id.starts_with(&format!("{key}-")))
                .map(|(_, _, t)| *t)
                .collect();
            of_key.sort();
            assert!(within_budget(&of_key, 1, 1000), "key {key}: {of_key:?}");
        }
        drop(workers);
        producer.close().await;
    }

    /// A cancelled running job's slot is free at once, not when its worker
    /// gets round to ending the run: the worker holding the key's only slot
    /// is frozen (SIGSTOP, its 10 s lease still running), the job is
    /// cancelled, and the next job of the key runs on another worker long
    /// before that lease could expire.
    #[tokio::test]
    async fn a_cancel_frees_the_slot_even_when_the_worker_running_the_job_is_frozen() {
        let server = RedisServer::start();
        let ns = namespace("cancel-frozen");
        let producer = Scheduler::builder(server.url())
            .namespace(&ns)
            .register::<LimitedProbe>()
            .producer_only()
            .start()
            .await
            .unwrap();
        let events = Events::default();
        let holder = ChildWorker::spawn(BIN, &server.url(), &ns, 10_000, 3_000, 1, &events).await;
        let long = ProbeArgs {
            sleep_ms: 60_000,
            ..ProbeArgs::new("k")
        };
        producer
            .enqueue(
                JobRequest::<LimitedProbe>::new(long)
                    .id("long")
                    .limit_key("k"),
            )
            .await
            .unwrap();
        assert!(events.wait("start", 1, Duration::from_secs(20)).await);
        holder.pause();
        let started = std::time::Instant::now();
        producer.cancel("long").await.unwrap();
        producer
            .enqueue(
                JobRequest::<LimitedProbe>::new(ProbeArgs::new("k"))
                    .id("next")
                    .limit_key("k"),
            )
            .await
            .unwrap();
        let other = ChildWorker::spawn(BIN, &server.url(), &ns, 10_000, 3_000, 1, &events).await;
        assert!(
            wait_until(Duration::from_secs(8), || events
                .all()
                .iter()
                .any(|e| e.event == "end" && e.job_id == "next"))
            .await,
            "the next job of the key waited for the frozen worker"
        );
        // Well before the frozen worker's 10 s lease could have freed the slot.
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "{:?}",
            started.elapsed()
        );
        holder.resume();
        drop((holder, other));
        producer.close().await;
    }
}
