//! Issue 16's figures; not part of the peer protocol.
//!
//! `queues-drain`: the drain of N no-op jobs by one worker process at 50 in
//! flight, from the default queue alone, against the same N jobs spread over
//! 10 queues with mixed priorities and a per-task concurrency limit that is
//! never reached, alternating the two, `--rounds` times each:
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 queues-drain --n 20000 --rounds 3
//! ```
//!
//! `rate-lateness`: how long after the instant its rate allows (10 starts per
//! 100 ms) each job of a backlog starts, by the backend's own clock (the
//! `Started` events), in one process:
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 rate-lateness --n 500
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::ClientLike;
use scheduler::chrono::{TimeDelta, Utc};
use scheduler::{Dep, Error, JobEventKind, JobRequest, Scheduler, Task};
use serde_json::json;

use crate::args::Args;
use crate::scale::{cpu_seconds, redis_pid, spawn_worker_with, stop_workers, wait_drained};
use crate::{emit, now_ms, percentile, producer, side_connection, Stats};

/// Counts one no-op job (the ten queues' tasks, each with a concurrency
/// limit of 100,000 that 50 in flight never reaches).
macro_rules! count {
    ($stats:ident) => {{
        $stats.started(now_ms());
        $stats.ended(now_ms());
        Ok::<(), String>(())
    }};
}

#[scheduler::task(queue = "q0", concurrency = 100000)]
async fn noop_q0(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q1", concurrency = 100000)]
async fn noop_q1(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q2", concurrency = 100000)]
async fn noop_q2(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q3", concurrency = 100000)]
async fn noop_q3(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q4", concurrency = 100000)]
async fn noop_q4(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q5", concurrency = 100000)]
async fn noop_q5(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q6", concurrency = 100000)]
async fn noop_q6(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q7", concurrency = 100000)]
async fn noop_q7(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q8", concurrency = 100000)]
async fn noop_q8(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}
#[scheduler::task(queue = "q9", concurrency = 100000)]
async fn noop_q9(stats: Dep<Stats>, i: u64) -> Result<(), String> {
    let _ = i;
    count!(stats)
}

/// The rate-limited task of `rate-lateness`, in a queue of its own (the
/// peer protocol's worker serves `default` alone, and a sharded one may not
/// run a limited task).
#[scheduler::task(queue = "rated", rate = "10/100ms")]
async fn rated_noop(i: u64) -> Result<(), String> {
    let _ = i;
    Ok(())
}

const QUEUES: &str = "q0,q1,q2,q3,q4,q5,q6,q7,q8,q9";

/// Enqueues `n` jobs due at `at`: bench_job in the default queue, or the ten
/// queues' tasks in turn with priorities 0 to 3.
async fn preload(
    s: &Scheduler,
    n: usize,
    spread: bool,
    round: usize,
    at: scheduler::chrono::DateTime<Utc>,
) -> Result<(), Error> {
    if !spread {
        let jobs = (0..n).map(|i| {
            crate::bench_job::job("noop".into(), 0.0, String::new())
                .id(format!("qd-{round}-{i}"))
                .at(at)
        });
        s.enqueue_many(jobs).await?;
        return Ok(());
    }
    fn batch<T: Task>(
        round: usize,
        queue: usize,
        n: usize,
        at: scheduler::chrono::DateTime<Utc>,
        make: impl Fn(u64) -> JobRequest<T>,
    ) -> Vec<JobRequest<T>> {
        (0..n)
            .filter(|i| i % 10 == queue)
            .map(|i| {
                make(i as u64)
                    .id(format!("qd-{round}-{i}"))
                    .priority((i % 4) as i8)
                    .at(at)
            })
            .collect()
    }
    s.enqueue_many(batch(round, 0, n, at, noop_q0::job)).await?;
    s.enqueue_many(batch(round, 1, n, at, noop_q1::job)).await?;
    s.enqueue_many(batch(round, 2, n, at, noop_q2::job)).await?;
    s.enqueue_many(batch(round, 3, n, at, noop_q3::job)).await?;
    s.enqueue_many(batch(round, 4, n, at, noop_q4::job)).await?;
    s.enqueue_many(batch(round, 5, n, at, noop_q5::job)).await?;
    s.enqueue_many(batch(round, 6, n, at, noop_q6::job)).await?;
    s.enqueue_many(batch(round, 7, n, at, noop_q7::job)).await?;
    s.enqueue_many(batch(round, 8, n, at, noop_q8::job)).await?;
    s.enqueue_many(batch(round, 9, n, at, noop_q9::job)).await?;
    Ok(())
}

pub(crate) async fn queues_drain(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(1);
    let rounds = (a.num("rounds") as usize).max(1);
    let concurrency = a.get("concurrency").unwrap_or("50").to_string();
    let redis = side_connection(&a.url).await?;
    let redis_pid = redis_pid(&redis).await?;
    let s = producer(&a.url).await?;
    let mut rows = Vec::new();
    let mut by_variant: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds * 2 {
        let spread = round % 2 == 1;
        let flags: Vec<&str> = if spread {
            vec!["--queues", QUEUES]
        } else {
            Vec::new()
        };
        let mut child = spawn_worker_with(&a.url, &concurrency, &flags)?;
        let due_at = Utc::now() + TimeDelta::milliseconds(1500);
        preload(&s, n, spread, round, due_at).await?;
        let wait = (due_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let t0 = Instant::now();
        let redis_cpu0 = cpu_seconds(redis_pid);
        wait_drained(&s, Duration::from_secs(120), Duration::from_millis(2)).await?;
        let elapsed = t0.elapsed().as_secs_f64();
        let redis_cpu = cpu_seconds(redis_pid) - redis_cpu0;
        stop_workers(std::slice::from_mut(&mut child));
        let rate = (n as f64 / elapsed).round();
        by_variant[usize::from(spread)].push(rate);
        let row = json!({
            "variant": if spread { "10 queues, priorities 0-3, per-task limit never reached" } else { "default queue" },
            "n": n,
            "concurrency": concurrency,
            "drain_jobs_per_s": rate,
            "redis_cpu_us_per_job": redis_cpu / n as f64 * 1e6,
        });
        emit(row.clone());
        rows.push(row);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let single = median(&mut by_variant[0]);
    let spread = median(&mut by_variant[1]);
    emit(json!({
        "queues_drain": rows,
        "median_default_queue": single,
        "median_ten_queues": spread,
        "ratio": spread / single,
    }));
    s.close().await;
    let _ = redis.quit().await;
    Ok(())
}

pub(crate) async fn rate_lateness(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(20);
    let s = Scheduler::builder(a.url.as_str())
        .worker(scheduler::WorkerConfig {
            concurrency: 50,
            queues: scheduler::Queues::strict(["rated"]),
            ..scheduler::WorkerConfig::default()
        })
        .provide_arc(Arc::new(Stats::new(0, None)))
        .start()
        .await?;
    let due_at = Utc::now() + TimeDelta::milliseconds(1000);
    let run = due_at.timestamp_millis();
    let jobs = (0..n).map(|i| {
        rated_noop::job(i as u64)
            .id(format!("rl-{run}-{i}"))
            .at(due_at)
    });
    s.enqueue_many(jobs).await?;
    // Listened to after the enqueue (whose events a burst would overflow),
    // before the jobs are due.
    let mut events = s.events().await?;
    let mut starts: Vec<i64> = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    while starts.len() < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(event))) => {
                if matches!(event.kind, JobEventKind::Started { .. })
                    && event.task == rated_noop::NAME
                {
                    starts.push(event.at.timestamp_millis());
                }
            }
            Ok(Some(Err(missed))) => {
                return Err(Error::Config(format!("events missed: {missed:?}")))
            }
            _ => break,
        }
    }
    s.close().await;
    starts.sort();
    // The k-th start may happen once the (k-10)-th is 100 ms old; the first
    // ten once they are due.
    let (count, window) = (10usize, 100i64);
    let due = due_at.timestamp_millis();
    let mut lateness: Vec<f64> = Vec::new();
    let mut early = 0;
    for (k, start) in starts.iter().enumerate() {
        let allowed = if k < count {
            due
        } else {
            starts[k - count] + window
        };
        let late = start - allowed;
        if late < 0 {
            early += 1;
        }
        if !(0..=20).contains(&late) {
            eprintln!("outlier: start #{k} at {start}, allowed {allowed} (due {due})");
        }
        lateness.push(late as f64);
    }
    lateness.sort_by(f64::total_cmp);
    emit(json!({
        "rate_lateness": {
            "rate": "10/100ms",
            "jobs": starts.len(),
            "p50_ms": percentile(&lateness, 50.0),
            "p99_ms": percentile(&lateness, 99.0),
            "max_ms": lateness.last().copied().unwrap_or(0.0),
            "early": early,
            "clock": "the backend's (Redis TIME, ms) for both the start and the instant allowed",
        }
    }));
    Ok(())
}
