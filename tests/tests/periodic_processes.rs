//! Exactly one run per tick across processes (issue 15): four worker
//! processes share an every-second `#[task(cron = ...)]` schedule for a
//! minute, one is SIGKILLed in the middle of a run, and every tick still
//! completes once. The runs are recorded by the task itself in Redis, with
//! the Redis clock (`tests/src/bin/tick-worker.rs`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scheduler::{JobStatus, Scheduler};
use scheduler_tests::child::{ChildWorker, Events};
use scheduler_tests::{namespace, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_tick-worker");
const RUNS_KEY: &str = "tick-runs";
const PROCESSES: usize = 4;
/// From the first run to the stop.
const RUN_FOR: Duration = Duration::from_secs(60);
/// When one process is killed, counted from the first run.
const KILL_AFTER: Duration = Duration::from_secs(30);

/// One record a run wrote.
#[derive(Debug, Clone)]
struct Record {
    event: String,
    tick_ms: i64,
    pid: u32,
    attempt: u32,
    /// Redis time, microseconds.
    t_us: i64,
}

fn records(server: &RedisServer) -> Vec<Record> {
    let text = server.cli(&["LRANGE", RUNS_KEY, "0", "-1"]).unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Record {
                event: v["event"].as_str().unwrap().to_string(),
                tick_ms: v["tick_ms"].as_i64().unwrap(),
                pid: v["pid"].as_u64().unwrap() as u32,
                attempt: v["attempt"].as_u64().unwrap() as u32,
                t_us: v["t_us"].as_i64().unwrap(),
            }
        })
        .collect()
}

/// The Redis clock, microseconds.
fn redis_time_us(server: &RedisServer) -> i64 {
    let text = server.cli(&["TIME"]).unwrap();
    let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().unwrap());
    parts.next().unwrap() * 1_000_000 + parts.next().unwrap()
}

/// A run of one tick: who ran it, when it started and ended (Redis µs;
/// `None` when it never recorded its end).
#[derive(Debug)]
struct Run {
    pid: u32,
    attempt: u32,
    start_us: i64,
    end_us: Option<i64>,
}

fn runs_by_tick(records: &[Record]) -> BTreeMap<i64, Vec<Run>> {
    let mut ticks: BTreeMap<i64, Vec<Run>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.event == "start") {
        ticks.entry(r.tick_ms).or_default().push(Run {
            pid: r.pid,
            attempt: r.attempt,
            start_us: r.t_us,
            end_us: None,
        });
    }
    for r in records.iter().filter(|r| r.event == "end") {
        let run = ticks
            .get_mut(&r.tick_ms)
            .and_then(|runs| {
                runs.iter_mut()
                    .find(|run| run.pid == r.pid && run.attempt == r.attempt)
            })
            .unwrap_or_else(|| panic!("an end without its start: {r:?}"));
        assert!(run.end_us.is_none(), "two ends for one run: {r:?}");
        run.end_us = Some(r.t_us);
    }
    for runs in ticks.values_mut() {
        runs.sort_by_key(|run| run.start_us);
    }
    ticks
}

#[tokio::test]
async fn an_every_second_schedule_runs_each_tick_once_across_four_processes_one_killed_mid_run() {
    let server = RedisServer::start();
    let ns = namespace("ticks");
    let events = Events::default();
    let mut workers = Vec::new();
    for _ in 0..PROCESSES {
        // 1 s lease, 300 ms heartbeat: a killed process's run is taken over within about a second.
        workers.push(ChildWorker::spawn(BIN, &server.url(), &ns, 1000, 300, 10, &events).await);
    }
    let started = scheduler_tests::wait_until(Duration::from_secs(10), || {
        server.cli(&["LLEN", RUNS_KEY]).unwrap().trim() != "0"
    })
    .await;
    assert!(started, "no tick ran within 10 s");
    let first_run = Instant::now();

    // Half way, SIGKILL a process while one of its runs is in flight.
    tokio::time::sleep(KILL_AFTER).await;
    let in_flight = |records: &[Record]| {
        records
            .iter()
            .filter(|r| r.event == "start")
            .find(|s| {
                !records
                    .iter()
                    .any(|e| e.event == "end" && e.pid == s.pid && e.tick_ms == s.tick_ms)
            })
            .map(|s| (s.pid, s.tick_ms))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (victim, killed_tick) = loop {
        if let Some((pid, tick)) = in_flight(&records(&server)) {
            let worker = workers.iter_mut().find(|w| w.pid() == pid).unwrap();
            worker.kill();
            break (pid, tick);
        }
        assert!(Instant::now() < deadline, "no run started in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed_at_us = redis_time_us(&server);

    // A minute after the first run: stop planning, let the runs in flight end.
    tokio::time::sleep(RUN_FOR.saturating_sub(first_run.elapsed())).await;
    let producer = Scheduler::builder(server.url())
        .namespace(ns.as_str())
        .producer_only()
        .start()
        .await
        .unwrap();
    producer.pause_schedule("beat").await.unwrap();
    for w in workers.iter_mut().filter(|w| w.pid() != victim) {
        w.terminate();
    }

    let ticks = runs_by_tick(&records(&server));
    let (first, last) = (
        *ticks.keys().next().unwrap(),
        *ticks.keys().next_back().unwrap(),
    );
    // Every tick of the minute ran: consecutive seconds, about sixty of them.
    let expected: Vec<i64> = (first..=last).step_by(1000).collect();
    assert_eq!(ticks.keys().copied().collect::<Vec<_>>(), expected);
    assert!(
        (55..=65).contains(&ticks.len()),
        "{} ticks in a minute",
        ticks.len()
    );
    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for (tick, runs) in &ticks {
        let completed: Vec<&Run> = runs.iter().filter(|r| r.end_us.is_some()).collect();
        assert_eq!(completed.len(), 1, "tick {tick}: {runs:?}");
        *by_pid.entry(completed[0].pid).or_default() += 1;
        let id = format!("schedule:beat:{tick}");
        assert_eq!(
            producer.status(&id).await.unwrap(),
            JobStatus::Completed,
            "{id}"
        );
        for run in runs {
            assert!(
                run.start_us >= tick * 1000,
                "tick {tick} started {} µs early: {run:?}",
                tick * 1000 - run.start_us
            );
        }
        // At least once: a second start only for the run the kill cut short,
        // and never while the first one could still be running.
        if runs.len() > 1 {
            assert_eq!(*tick, killed_tick, "tick {tick} started twice: {runs:?}");
            assert_eq!(runs.len(), 2, "{runs:?}");
            assert_eq!((runs[0].pid, runs[0].end_us), (victim, None), "{runs:?}");
            assert!(
                runs[1].start_us > killed_at_us,
                "tick {tick} ran again before the kill: {runs:?}"
            );
        }
        for pair in runs.windows(2) {
            let end = pair[0].end_us.unwrap_or(killed_at_us);
            assert!(
                end <= pair[1].start_us,
                "tick {tick}: overlapping runs {runs:?}"
            );
        }
    }
    // The run the kill interrupted was taken over, and completed, elsewhere.
    let taken_over = &ticks[&killed_tick];
    assert_eq!(taken_over.len(), 2, "{taken_over:?}");
    assert_ne!(taken_over[1].pid, victim);
    assert_eq!(taken_over[1].attempt, 2);
    // The ticks were shared: more than one process completed some.
    assert!(by_pid.len() >= 2, "completions by process: {by_pid:?}");
    producer.close().await;
}
