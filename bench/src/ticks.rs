//! `tick-lateness`: how late periodic ticks start (issue 15's target: p99 at
//! most 10 ms, none early). Not part of the peer protocol; run it on a Redis
//! of its own.
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 tick-lateness --schedules 100 --seconds 60 [--concurrency N] [--time-in-task]
//! ```
//!
//! One process, with the default worker settings: it stores `--schedules`
//! schedules `Schedule::every(1 s)` (all tick at the same instants), runs its
//! worker for `--seconds`, then removes them. Each run reports its job id
//! (`schedule:<name>:<tick ms>`); after the run the job's recorded start
//! (`JobInfo::started_at`, stamped by the claim script with Redis `TIME`,
//! whole milliseconds rounded down) is read back, and lateness = that start
//! minus the tick. Both are on the Redis clock, the one the scheduler plans
//! and claims by.
//!
//! With `--time-in-task` each run also asks Redis for the time (`TIME`, on
//! one side connection shared by all runs) first thing, the measure this
//! bench used before: its start minus its tick plus one round trip, and the
//! round trips of a tick's runs queue on that connection.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::prelude::LuaInterface;
use futures_util::StreamExt;
use scheduler::{Error, JobContext, Schedule, Scheduler, WorkerConfig};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::{emit, percentile, side_connection};

/// What a run reports: its job id and, with `--time-in-task`, the Redis time
/// (microseconds) its body read first thing.
type Run = (String, Option<i64>);

/// Where runs report, and the side connection for `--time-in-task`. A
/// process global rather than a `Dep`, so that the `worker` subcommand (same
/// binary, every task checked at start-up) needs nothing for it.
static RUNS: OnceLock<(Option<fred::clients::Client>, mpsc::UnboundedSender<Run>)> =
    OnceLock::new();

/// `TIME` in microseconds, as one number.
const TIME_US: &str =
    "local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2])";

/// Recorded starts read back at once after the run.
const INFO_IN_FLIGHT: usize = 32;

/// Each tick of every schedule: reports that it ran.
#[scheduler::task]
async fn tick_probe(ctx: JobContext) -> Result<(), fred::error::Error> {
    let Some((redis, runs)) = RUNS.get() else {
        return Ok(());
    };
    let time_in_task_us = match redis {
        Some(redis) => Some(redis.eval::<i64, _, _, _>(TIME_US, (), ()).await?),
        None => None,
    };
    let _ = runs.send((ctx.job_id().to_string(), time_in_task_us));
    Ok(())
}

/// The tick a periodic job id names (`schedule:<name>:<unix ms>`), in ms.
fn tick_ms(job_id: &str) -> Option<i64> {
    job_id.rsplit(':').next()?.parse().ok()
}

/// Count, early count and percentiles of lateness samples (ms).
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "runs": ms.len(),
        "early": ms.iter().filter(|l| **l < 0.0).count(),
        "min": ms.first().copied().unwrap_or(0.0),
        "p50": percentile(&ms, 50.0),
        "p90": percentile(&ms, 90.0),
        "p99": percentile(&ms, 99.0),
        "max": ms.last().copied().unwrap_or(0.0),
    })
}

/// Per tick instant: the first and the last run's recorded start (ms late)
/// and how many distinct start milliseconds its runs have (a lower bound on
/// the claims that took them), each as its median over the instants.
fn per_instant(starts: &BTreeMap<i64, Vec<i64>>) -> serde_json::Value {
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut claims = Vec::new();
    for (tick, at) in starts {
        let mut at = at.clone();
        at.sort_unstable();
        first.push((at[0] - tick) as f64);
        last.push((at[at.len() - 1] - tick) as f64);
        at.dedup();
        claims.push(at.len() as f64);
    }
    for v in [&mut first, &mut last, &mut claims] {
        v.sort_by(f64::total_cmp);
    }
    json!({
        "first_start_p50": percentile(&first, 50.0),
        "last_start_p50": percentile(&last, 50.0),
        "last_start_max": last.last().copied().unwrap_or(0.0),
        "start_ms_values_p50": percentile(&claims, 50.0),
        "start_ms_values_max": claims.last().copied().unwrap_or(0.0),
    })
}

pub(crate) async fn tick_lateness(a: &Args) -> Result<(), Error> {
    let schedules = a.num_or("schedules", 100.0) as usize;
    let seconds = a.num_or("seconds", 60.0) as u64;
    let time_in_task = a.get("time-in-task").is_some();
    let redis = match time_in_task {
        true => Some(side_connection(&a.url).await?),
        false => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    RUNS.set((redis, tx))
        .map_err(|_| Error::Config("tick-lateness runs once per process".into()))?;
    let mut config = WorkerConfig::default();
    if let Some(n) = a.get("concurrency").and_then(|c| c.parse::<usize>().ok()) {
        config.concurrency = n.max(1);
    }
    let concurrency = config.concurrency;
    let scheduler = Scheduler::builder(a.url.as_str())
        .namespace(format!("tick-lateness-{}", std::process::id()))
        // The outcomes (with their recorded starts) are read after the run.
        .keep_result(Duration::from_secs(seconds + 600))
        // Every task in the binary is checked at start-up, the bench job too.
        .provide_arc(Arc::new(crate::Stats::new(0, None)))
        .worker(config)
        .start()
        .await?;
    let every_second = Schedule::every(Duration::from_secs(1))?;
    let names: Vec<String> = (0..schedules).map(|i| format!("tick-{i}")).collect();
    let setup = std::time::Instant::now();
    for name in &names {
        scheduler
            .schedule(name, tick_probe::job(), every_second.clone())
            .await?;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for name in &names {
        scheduler.remove_schedule(name).await?;
    }
    // The last ticks' runs report and finish within a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut runs = Vec::new();
    while let Ok(run) = rx.try_recv() {
        runs.push(run);
    }
    let mut infos = futures_util::stream::iter(runs.iter().map(|(id, _)| scheduler.info(id)))
        .buffered(INFO_IN_FLIGHT);
    let mut by_start_ms = Vec::new();
    let mut time_in_task_ms = Vec::new();
    let mut starts = BTreeMap::<i64, Vec<i64>>::new();
    let mut unreadable = 0usize;
    for (id, time_us) in &runs {
        let info = infos.next().await.transpose()?.flatten();
        let (Some(tick), Some(started)) = (tick_ms(id), info.and_then(|i| i.started_at)) else {
            unreadable += 1;
            continue;
        };
        let started = started.timestamp_millis();
        by_start_ms.push((started - tick) as f64);
        starts.entry(tick).or_default().push(started);
        if let Some(us) = time_us {
            time_in_task_ms.push((us - tick * 1000) as f64 / 1000.0);
        }
    }
    drop(infos);
    scheduler.close().await;
    // Seconds between the first and the last tick that ran with no run at all,
    // and ticks with fewer runs than schedules.
    let (first, last) = (
        starts.keys().next().copied().unwrap_or(0),
        starts.keys().next_back().copied().unwrap_or(0),
    );
    let gaps = (first..=last)
        .step_by(1_000)
        .filter(|t| !starts.contains_key(t))
        .map(|t| (t - first) / 1_000)
        .collect::<Vec<_>>();
    let short = starts.values().filter(|s| s.len() < schedules).count();
    emit(json!({
        "tick_lateness_ms": {
            "schedules": schedules,
            "seconds": seconds,
            "concurrency": concurrency,
            "setup_s": setup_s,
            "runs": runs.len(),
            "runs_without_recorded_start": unreadable,
            "instants": starts.len(),
            "instants_without_runs": gaps,
            "instants_with_runs_missing": short,
            "by_recorded_start": summary(by_start_ms),
            "by_time_in_task": time_in_task.then(|| summary(time_in_task_ms)),
            "per_instant": per_instant(&starts),
        }
    }));
    Ok(())
}
