//! `tick-lateness`: how late periodic ticks start (issue 15's target: p99 at
//! most 10 ms, none early). Not part of the peer protocol; run it on a Redis
//! of its own.
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 tick-lateness --schedules 100 --seconds 60
//! ```
//!
//! One process, with the default worker settings: it stores `--schedules`
//! schedules `Schedule::every(1 s)` (all tick at the same instants), runs its
//! worker for `--seconds`, then removes them. Each run asks Redis for the
//! time (`TIME`) first thing, so the lateness is its start minus its planned
//! instant on the Redis clock, the clock the scheduler plans and claims by,
//! plus one round trip.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::prelude::LuaInterface;
use scheduler::{Error, JobContext, Schedule, Scheduler, WorkerConfig};
use serde_json::json;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::{emit, side_connection};

/// A run's (planned tick, start), both Redis-clock microseconds.
type Start = (i64, i64);

/// Where runs report their start. A process global rather than a `Dep`, so
/// that the `worker` subcommand (same binary, every task checked at
/// start-up) needs nothing for it.
static STARTS: OnceLock<(fred::clients::Client, mpsc::UnboundedSender<Start>)> = OnceLock::new();

/// `TIME` in microseconds, as one number.
const TIME_US: &str =
    "local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2])";

/// Each tick of every schedule: reports when it started.
#[scheduler::task]
async fn tick_probe(ctx: JobContext) -> Result<(), fred::error::Error> {
    let Some((redis, starts)) = STARTS.get() else {
        return Ok(());
    };
    let now_us: i64 = redis.eval(TIME_US, (), ()).await?;
    if let Some(tick) = ctx.planned_tick() {
        let _ = starts.send((tick.timestamp_micros(), now_us));
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) async fn tick_lateness(a: &Args) -> Result<(), Error> {
    let schedules = match a.num("schedules") as usize {
        0 => 100,
        n => n,
    };
    let seconds = match a.num("seconds") as u64 {
        0 => 60,
        n => n,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    STARTS
        .set((side_connection(&a.url).await?, tx))
        .map_err(|_| Error::Config("tick-lateness runs once per process".into()))?;
    let mut config = WorkerConfig::default();
    if let Some(n) = a.get("concurrency").and_then(|c| c.parse::<usize>().ok()) {
        config.concurrency = n.max(1);
    }
    let concurrency = config.concurrency;
    let scheduler = Scheduler::builder(a.url.as_str())
        .namespace(format!("tick-lateness-{}", std::process::id()))
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
    // The last ticks' runs report within a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    scheduler.close().await;
    let mut lateness_ms = Vec::new();
    let mut per_tick = std::collections::BTreeMap::<i64, usize>::new();
    while let Ok((tick_us, start_us)) = rx.try_recv() {
        lateness_ms.push((start_us - tick_us) as f64 / 1000.0);
        *per_tick.entry(tick_us).or_default() += 1;
    }
    lateness_ms.sort_by(f64::total_cmp);
    // Seconds between the first and the last tick that ran with no run at all,
    // and ticks with fewer runs than schedules.
    let (first, last) = (
        per_tick.keys().next().copied().unwrap_or(0),
        per_tick.keys().next_back().copied().unwrap_or(0),
    );
    let gaps = (first..=last)
        .step_by(1_000_000)
        .filter(|t| !per_tick.contains_key(t))
        .map(|t| (t - first) / 1_000_000)
        .collect::<Vec<_>>();
    let short = per_tick.values().filter(|n| **n < schedules).count();
    let early = lateness_ms.iter().filter(|l| **l < 0.0).count();
    emit(json!({
        "tick_lateness_ms": {
            "schedules": schedules,
            "seconds": seconds,
            "concurrency": concurrency,
            "setup_s": setup_s,
            "runs": lateness_ms.len(),
            "instants": per_tick.len(),
            "instants_without_runs": gaps,
            "instants_with_runs_missing": short,
            "early": early,
            "min": lateness_ms.first().copied().unwrap_or(0.0),
            "p50": percentile(&lateness_ms, 50.0),
            "p90": percentile(&lateness_ms, 90.0),
            "p99": percentile(&lateness_ms, 99.0),
            "max": lateness_ms.last().copied().unwrap_or(0.0),
        }
    }));
    Ok(())
}
