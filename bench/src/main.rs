//! Driver for the deferred-job-queue peer benchmark (see `README.md` and the
//! harness's `PROTOCOL.md`), written against the scheduler's public API only:
//! `#[task]` helpers (`enqueue`, `defer_by`, `defer_to`, `cancel`, `job`) and
//! `Scheduler::enqueue_many`, on the Redis backend.
//!
//! ```text
//! scheduler-bench --redis-url URL <subcommand> [--flag value | --switch]...
//! ```
//!
//! One JSON object per line on stdout; logs on stderr. `memory-baseline` is not
//! part of the protocol: it measures enqueue and drain in one process, on
//! `memory://` and on Redis, to show what the backend costs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod abort;
mod args;
mod call_latency;
mod cluster;
mod list_page;
mod queues;
mod retries;
mod scale;
mod ticks;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fred::prelude::{ClientLike, KeysInterface, ListInterface};
use futures_util::StreamExt;
use scheduler::chrono::{DateTime, Utc};
use scheduler::{CancelOutcome, Dep, Error, Scheduler, WorkerConfig};
use serde_json::json;

use crate::args::Args;

/// A `progress` line every this many completions.
const PROGRESS_EVERY: u64 = 1000;
/// Jobs per `enqueue_many` call in the untimed preload.
const PRELOAD_CALL: usize = 5000;
/// `enqueue_many` calls in flight in the untimed preload.
const PRELOAD_IN_FLIGHT: usize = 4;

/// Unix epoch wall-clock milliseconds with sub-ms resolution.
pub(crate) fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Prints one JSON line on stdout.
/// The nearest-rank percentile `p` (0 to 100) of sorted samples; 0 for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn emit(v: serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Completion counters of the worker process, shared with the task as a `Dep`.
pub(crate) struct Stats {
    count: AtomicU64,
    expect: u64,
    /// f64 bits of the first job's start (0 = none yet).
    first_start: AtomicU64,
    /// f64 bits of the latest job end (positive floats order like their bits).
    last_end: AtomicU64,
    done: AtomicBool,
    done_signal: tokio::sync::Notify,
    /// Connection for the handler's own RPUSH/INCR (absent in the memory baseline).
    side: Option<fred::clients::Client>,
}

impl Stats {
    fn new(expect: u64, side: Option<fred::clients::Client>) -> Self {
        Stats {
            count: AtomicU64::new(0),
            expect,
            first_start: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            done: AtomicBool::new(false),
            done_signal: tokio::sync::Notify::new(),
            side,
        }
    }

    /// A job started at `start` (epoch ms).
    fn started(&self, start: f64) {
        let _ = self.first_start.compare_exchange(
            0,
            start.to_bits(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// A job ended at `end` (epoch ms): counted, with `progress` and `done` lines.
    fn ended(&self, end: f64) {
        self.last_end.fetch_max(end.to_bits(), Ordering::Relaxed);
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(PROGRESS_EVERY) {
            emit(self.event("progress", n));
        }
        if self.expect > 0 && n >= self.expect && !self.done.swap(true, Ordering::Relaxed) {
            emit(self.event("done", n));
            self.done_signal.notify_waiters();
        }
    }

    fn event(&self, name: &str, count: u64) -> serde_json::Value {
        json!({
            "event": name,
            "count": count,
            "first_start_ms": f64::from_bits(self.first_start.load(Ordering::Relaxed)),
            "last_end_ms": f64::from_bits(self.last_end.load(Ordering::Relaxed)),
        })
    }
}

/// The benchmark job: `k` = "noop" | "lat" | "count", `s` = scheduled time
/// (epoch ms), `p` = padding.
#[scheduler::task]
async fn bench_job(
    stats: Dep<Stats>,
    k: String,
    s: f64,
    p: String,
) -> Result<(), fred::error::Error> {
    let _ = p;
    let start = now_ms();
    stats.started(start);
    if let Some(side) = &stats.side {
        match k.as_str() {
            "lat" => {
                let _: i64 = side.rpush("bench:lat", format!("{:.3}", start - s)).await?;
            }
            "count" => {
                let _: i64 = side.incr("bench:exec").await?;
            }
            _ => {}
        }
    }
    stats.ended(now_ms());
    Ok(())
}

/// A producer-only scheduler (client subcommands).
pub(crate) async fn producer(url: &str) -> Result<Scheduler, Error> {
    Scheduler::builder(url).producer_only().start().await
}

fn worker_config(concurrency: &str) -> WorkerConfig {
    let mut config = WorkerConfig::default();
    if let Ok(n) = concurrency.parse::<f64>() {
        config.concurrency = (n as usize).max(1);
    }
    config
}

pub(crate) async fn side_connection(url: &str) -> Result<fred::clients::Client, Error> {
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(url).map_err(|e| Error::Config(e.to_string()))?,
        None,
        None,
        None,
    );
    client
        .init()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(client)
}

async fn worker(a: &Args) -> Result<(), Error> {
    // Issue 17's overhead figure: the drain with a metrics recorder installed
    // against the drain without (set in the environment of `scale`, which
    // its worker processes inherit).
    if std::env::var_os("SCHEDULER_BENCH_METRICS").is_some() {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;
    }
    let stats = Arc::new(Stats::new(
        a.num("expect") as u64,
        Some(side_connection(&a.url).await?),
    ));
    let mut config = worker_config(a.get("concurrency").unwrap_or("default"));
    // The peer protocol's worker serves the default queue alone (as before
    // queues existed); `--queues q0,q1,..` serves those, equally weighted.
    config.queues = match a.get("queues") {
        Some(list) => scheduler::Queues::weighted(list.split(',').map(|q| (q.trim(), 1))),
        None => scheduler::Queues::strict(["default"]),
    };
    // `cluster-drain` runs its workers on a namespace of its own, sharded.
    let mut builder = Scheduler::builder(a.url.as_str());
    if let Some(namespace) = a.get("namespace") {
        builder = builder.namespace(namespace);
    }
    if let Some(shards) = a.get("shards").and_then(|s| s.parse().ok()) {
        builder = builder.shards(shards);
    }
    let scheduler = builder
        .worker(config)
        .provide_arc(Arc::clone(&stats))
        .start()
        .await?;
    emit(json!({"event": "ready", "t_ms": now_ms()}));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Config(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // The harness kills after 8 s; running bench jobs end in microseconds.
    let _ = tokio::time::timeout(Duration::from_secs(5), scheduler.close()).await;
    Ok(())
}

fn padding(a: &Args) -> String {
    "x".repeat(a.num("payload-bytes") as usize)
}

async fn enqueue(a: &Args) -> Result<(), Error> {
    let s = producer(&a.url).await?;
    let n = a.num("n") as usize;
    let prefix = a.get("id-prefix").unwrap_or("j").to_string();
    let pad = padding(a);
    let delay = Duration::from_secs_f64(a.num("delay-s").max(0.0));
    let request = |i: usize| {
        let job = bench_job::job("noop".into(), 0.0, pad.clone()).id(format!("{prefix}{i}"));
        if delay.is_zero() {
            job
        } else {
            job.after(delay)
        }
    };
    let mode = a.get("mode").unwrap_or("seq");
    let t0 = Instant::now();
    let accepted = match mode {
        "seq" => {
            let mut accepted = 0;
            for i in 0..n {
                let id = format!("{prefix}{i}");
                let outcome = if delay.is_zero() {
                    bench_job::enqueue(&s, &id, "noop".into(), 0.0, pad.clone()).await?
                } else {
                    bench_job::defer_by(&s, &id, delay, "noop".into(), 0.0, pad.clone()).await?
                };
                accepted += usize::from(outcome.is_enqueued());
            }
            accepted
        }
        "bulk" => {
            // The public bulk API, 1000 jobs per call, one call in flight.
            let mut accepted = 0;
            for start in (0..n).step_by(1000) {
                let outcomes = s
                    .enqueue_many((start..(start + 1000).min(n)).map(request))
                    .await?;
                accepted += outcomes.iter().filter(|o| o.is_enqueued()).count();
            }
            accepted
        }
        "preload" => {
            // Untimed setup: the same public bulk API, several calls in flight.
            let calls = (0..n).step_by(PRELOAD_CALL).map(|start| {
                let s = s.clone();
                let jobs: Vec<_> = (start..(start + PRELOAD_CALL).min(n))
                    .map(request)
                    .collect();
                async move { s.enqueue_many(jobs).await }
            });
            let mut results = futures_util::stream::iter(calls).buffer_unordered(PRELOAD_IN_FLIGHT);
            let mut accepted = 0;
            while let Some(outcomes) = results.next().await {
                accepted += outcomes?.iter().filter(|o| o.is_enqueued()).count();
            }
            accepted
        }
        other => return Err(Error::Config(format!("unknown --mode {other}"))),
    };
    let elapsed = t0.elapsed().as_secs_f64();
    s.close().await;
    emit(json!({"n": n, "accepted": accepted, "elapsed_s": elapsed}));
    Ok(())
}

/// An epoch-ms float as an instant, rounded up to the microsecond (the
/// scheduler rounds up to the millisecond): a job never runs before `ms`.
pub(crate) fn instant(ms: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((ms * 1000.0).ceil() as i64).unwrap_or_default()
}

async fn enqueue_deferred(a: &Args) -> Result<(), Error> {
    let s = producer(&a.url).await?;
    let n = a.num("n") as usize;
    let spread_ms = a.num("spread-s") * 1000.0;
    let prefix = a.get("id-prefix").unwrap_or("d").to_string();
    let base = now_ms() + a.num("lead-s") * 1000.0;
    let mut late = 0;
    let t0 = Instant::now();
    for i in 0..n {
        let sched = base + i as f64 * spread_ms / n as f64;
        let id = format!("{prefix}{i}");
        bench_job::defer_to(&s, &id, instant(sched), "lat".into(), sched, String::new()).await?;
        if now_ms() > sched {
            late += 1;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    s.close().await;
    emit(json!({"n": n, "elapsed_s": elapsed, "base_ms": base, "late_enqueue": late}));
    Ok(())
}

async fn enqueue_dup(a: &Args) -> Result<(), Error> {
    let s = producer(&a.url).await?;
    let n = a.num("n") as usize;
    let id = a.get("id").unwrap_or("dup").to_string();
    let mut accepted = 0;
    let t0 = Instant::now();
    for _ in 0..n {
        // Non-default: the id stays taken while the finished job's outcome is
        // kept (1 h), as the protocol's "dedup" expects; see `info.notes`.
        let job = bench_job::job("count".into(), 0.0, String::new())
            .id(id.as_str())
            .unique_until_result_expires();
        let outcome = s.enqueue(job).await?;
        accepted += usize::from(outcome.is_enqueued());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    s.close().await;
    emit(json!({"n": n, "accepted": accepted, "elapsed_s": elapsed}));
    Ok(())
}

async fn enqueue_cancel(a: &Args) -> Result<(), Error> {
    let s = producer(&a.url).await?;
    let n = a.num("n") as usize;
    let prefix = a.get("id-prefix").unwrap_or("c").to_string();
    let due = now_ms() + a.num("delay-s") * 1000.0;
    let at = instant(due);
    let t0 = Instant::now();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        bench_job::defer_to(&s, &id, at, "count".into(), 0.0, String::new()).await?;
    }
    let enqueue_elapsed = t0.elapsed().as_secs_f64();
    let mut cancelled = 0;
    let t1 = Instant::now();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        if let CancelOutcome::Removed { .. } = bench_job::cancel(&s, &id).await? {
            cancelled += 1;
        }
    }
    let cancel_elapsed = t1.elapsed().as_secs_f64();
    let missed = now_ms() > due;
    s.close().await;
    emit(json!({
        "n": n, "enqueue_elapsed_s": enqueue_elapsed, "cancel_elapsed_s": cancel_elapsed,
        "cancelled": cancelled, "deadline_missed": missed, "due_ms": due,
    }));
    Ok(())
}

/// Enqueue (sequential and bulk) and drain rates in one process, for `url`.
async fn baseline_one(url: &str, n: usize, concurrency: &str) -> Result<serde_json::Value, Error> {
    let tag = format!("b{}-", std::process::id());
    let s = Scheduler::builder(url)
        .namespace("bench-baseline")
        .producer_only()
        .start()
        .await?;
    let t0 = Instant::now();
    for i in 0..n {
        bench_job::enqueue(
            &s,
            &format!("{tag}seq{i}"),
            "noop".into(),
            0.0,
            String::new(),
        )
        .await?;
    }
    let seq = n as f64 / t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for start in (0..n).step_by(1000) {
        let jobs = (start..(start + 1000).min(n))
            .map(|i| bench_job::job("noop".into(), 0.0, String::new()).id(format!("{tag}bulk{i}")));
        s.enqueue_many(jobs).await?;
    }
    let bulk = n as f64 / t1.elapsed().as_secs_f64();
    let stats = Arc::new(Stats::new(2 * n as u64, None));
    let done = stats.done_signal.notified();
    let w = Scheduler::builder(url)
        .namespace("bench-baseline")
        .worker(worker_config(concurrency))
        .provide_arc(Arc::clone(&stats))
        .start()
        .await?;
    let finished = tokio::time::timeout(Duration::from_secs(120), done)
        .await
        .is_ok();
    let count = stats.count.load(Ordering::Relaxed);
    let span_ms = f64::from_bits(stats.last_end.load(Ordering::Relaxed))
        - f64::from_bits(stats.first_start.load(Ordering::Relaxed));
    w.close().await;
    s.close().await;
    Ok(json!({
        "backend": url.split("://").next().unwrap_or(url),
        "n": n, "concurrency": concurrency,
        "enqueue_seq_jobs_per_s": seq.round(),
        "enqueue_bulk_jobs_per_s": bulk.round(),
        "drain_jobs_per_s": (count as f64 / (span_ms / 1000.0)).round(),
        "drained": count, "finished": finished,
    }))
}

async fn memory_baseline(a: &Args) -> Result<(), Error> {
    let n = a.get("n").map(|_| a.num("n") as usize).unwrap_or(20_000);
    let concurrency = a.get("concurrency").unwrap_or("default").to_string();
    for url in ["memory://baseline", a.url.as_str()] {
        emit(baseline_one(url, n, &concurrency).await?);
    }
    Ok(())
}

fn info() {
    emit(json!({
        "system": "scheduler",
        "version": env!("V_SCHEDULER"),
        "runtime": format!("Rust, tokio {} (worker: multi-thread runtime; client subcommands: current-thread runtime), release build", env!("V_TOKIO")),
        "client_lib": format!("fred {}", env!("V_FRED")),
        "supports": {"bulk": true, "cancel": true, "dedup": true},
        "default_concurrency": WorkerConfig::default().concurrency.to_string(),
        "notes": [
            "all settings default (lease 30 s, keep_result 1 h, claims and completions batched up to 100 per script call)",
            "dedup = same job id while the job is deferred, queued or running; by default a finished job's id can be reused at once (results are kept for inspection, not for dedup)",
            "non-default setting, S4 dedup only: enqueue-dup builds its requests with JobRequest::unique_until_result_expires(), so the id also stays taken while the finished job's outcome is kept (keep_result, 1 h) and a repeated enqueue returns RecentlyFinished; reason: the scenario asks for one execution per id, which the default (id free once the job finished) does not promise",
            "deferral = #[task] defer_to(DateTime) rounded up to the ms, compared with Redis server time; defer_by for --delay-s",
            "cancel = #[task] cancel(id); counted when it returns Removed",
            "S1 seq = #[task] enqueue, one awaited call per job: the library sends a plain first enqueue as one FCALL of its enqueue_one function (4 keys, 8 arguments), and a re-send after a connection failure, a duplicate id or a unique request through enqueue.lua",
            "S1 bulk = Scheduler::enqueue_many, 1000 jobs per call, one call in flight (the library sends them as 4 enqueue.lua calls of 250, pipelined); untimed preload = enqueue_many, 5000 jobs per call, 4 calls in flight on one multiplexed connection",
        ],
    }));
}

fn main() {
    let a = Args::parse(std::env::args().skip(1));
    // The worker gets tokio's default multi-thread runtime, as an application
    // would run it. The client subcommands are one sequential caller: on a
    // current-thread runtime the connection task and the caller share a thread,
    // so no cross-thread wake-up per command.
    let runtime = if a.cmd == "worker"
        || a.cmd == "memory-baseline"
        || a.cmd == "tick-lateness"
        || a.cmd == "rate-lateness"
    {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(run(a)),
        Err(e) => {
            eprintln!("scheduler-bench: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(a: Args) {
    let result = match a.cmd.as_str() {
        "info" => {
            info();
            Ok(())
        }
        "worker" => worker(&a).await,
        "enqueue" => enqueue(&a).await,
        "enqueue-deferred" => enqueue_deferred(&a).await,
        "enqueue-dup" => enqueue_dup(&a).await,
        "enqueue-cancel" => enqueue_cancel(&a).await,
        "memory-baseline" => memory_baseline(&a).await,
        "abort-latency" => abort::abort_latency(&a).await,
        "scale" => scale::scale(&a).await,
        "tick-lateness" => ticks::tick_lateness(&a).await,
        "list-page" => list_page::list_page(&a).await,
        "queues-drain" => queues::queues_drain(&a).await,
        "rate-lateness" => queues::rate_lateness(&a).await,
        "retry-lateness" => retries::retry_lateness(&a).await,
        "cluster-drain" => cluster::cluster_drain(&a).await,
        "call-latency" => call_latency::call_latency(&a).await,
        other => {
            eprintln!("unknown subcommand {other:?}; see the crate docs");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("scheduler-bench {}: {e}", a.cmd);
        std::process::exit(1);
    }
}
