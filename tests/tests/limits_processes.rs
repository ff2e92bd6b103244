//! Concurrency limits across worker processes, under a crash: four
//! `probe-worker` processes share one namespace; one is SIGKILLed while it
//! holds a slot. Every start and end is logged (by each process, on one
//! machine clock), and at no instant do more jobs run than the task's limit,
//! nor more of one key than the key's limit. The killed worker's slot frees
//! when its lease expires, and its job runs again (attempt 2). Likewise no
//! window of a rate's length holds more starts than its budget, counting
//! every start the backend made (the killed one's too).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use scheduler::{JobEventKind, JobRequest, Scheduler};
use scheduler_tests::child::{ChildWorker, Event, Events};
use scheduler_tests::tasks::{LimitedProbe, ProbeArgs, RatedProbe};
use scheduler_tests::{namespace, wait_until, RedisServer};

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
