//! `scale`: drain rate with 1, 2, 4 ... worker processes on one Redis, with
//! the CPU Redis and the workers used. Not part of the peer protocol; run it
//! on a Redis of its own.
//!
//! ```text
//! scheduler-bench --redis-url redis://127.0.0.1:6396/0 scale --workers 1,2,4 --n 20000 --concurrency 50
//! ```
//!
//! Each round starts the worker processes (this binary's `worker`
//! subcommand), then preloads N no-op jobs all due at one instant 1.5 s ahead,
//! and measures from that instant until no job is due or running.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, HashesInterface, SortedSetsInterface};
use scheduler::chrono::{TimeDelta, Utc};
use scheduler::Error;
use serde_json::json;

use crate::args::Args;
use crate::{bench_job, emit, producer, side_connection};

/// CPU seconds (user + system) a process has used so far, from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

pub(crate) fn spawn_worker(url: &str, concurrency: &str) -> Result<Child, Error> {
    spawn_worker_with(url, concurrency, &[])
}

/// A worker process (this binary's `worker` subcommand) with extra flags.
pub(crate) fn spawn_worker_with(
    url: &str,
    concurrency: &str,
    extra: &[&str],
) -> Result<Child, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Config(e.to_string()))?;
    let mut child = Command::new(exe)
        .args(["--redis-url", url, "worker", "--concurrency", concurrency])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start a worker: {e}")))?;
    // Wait for its `ready` line, then keep draining its stdout.
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Config("worker without stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.map(|l| l.contains("\"ready\"")).unwrap_or(true) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

/// Polls the counts every `poll` until no job is deferred, queued or running,
/// or `limit` has passed.
pub(crate) async fn wait_drained(
    s: &scheduler::Scheduler,
    limit: Duration,
    poll: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    loop {
        let c = s.counts().await?;
        if c.deferred + c.queued + c.running == 0 || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(poll).await;
    }
}

/// Stops worker processes: SIGTERM (they close their scheduler), then waits.
pub(crate) fn stop_workers(children: &mut [Child]) {
    for child in children.iter_mut() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
}

/// The redis-server's process id (its CPU is read from /proc).
pub(crate) async fn redis_pid(redis: &fred::clients::Client) -> Result<u32, Error> {
    let info: String = redis
        .info(Some(fred::types::InfoKind::Server))
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Config("no process_id in INFO server".into()))
}

pub(crate) async fn scale(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(1);
    let concurrency = a.get("concurrency").unwrap_or("50").to_string();
    let counts: Vec<usize> = a
        .get("workers")
        .unwrap_or("1,2,4")
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let redis = side_connection(&a.url).await?;
    let redis_pid = redis_pid(&redis).await?;
    let s = producer(&a.url).await?;
    let mut rows = Vec::new();
    for (round, workers) in counts.iter().copied().enumerate() {
        let mut children = Vec::new();
        for _ in 0..workers {
            children.push(spawn_worker(&a.url, &concurrency)?);
        }
        let due_at = Utc::now() + TimeDelta::milliseconds(1500);
        let jobs = (0..n).map(|i| {
            bench_job::job("noop".into(), 0.0, String::new())
                .id(format!("scale-{round}-{i}"))
                .at(due_at)
        });
        s.enqueue_many(jobs).await?;
        let wait = (due_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let t0 = Instant::now();
        let redis_cpu0 = cpu_seconds(redis_pid);
        let workers_cpu0: f64 = children.iter().map(|c| cpu_seconds(c.id())).sum();
        let deadline = t0 + Duration::from_secs(120);
        loop {
            let due: u64 = redis
                .zcard("{scheduler}:due")
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            let active: u64 = redis
                .hlen("{scheduler}:active")
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            if (due == 0 && active == 0) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let redis_cpu = cpu_seconds(redis_pid) - redis_cpu0;
        let workers_cpu: f64 =
            children.iter().map(|c| cpu_seconds(c.id())).sum::<f64>() - workers_cpu0;
        stop_workers(&mut children);
        let row = json!({
            "workers": workers,
            "concurrency": concurrency,
            "n": n,
            "drain_jobs_per_s": (n as f64 / elapsed).round(),
            "redis_cpu_s_per_1k": redis_cpu / n as f64 * 1000.0,
            "workers_cpu_s_per_1k": workers_cpu / n as f64 * 1000.0,
            "redis_cpu_share": redis_cpu / elapsed,
            "workers_cpu_share": workers_cpu / elapsed,
        });
        emit(row.clone());
        rows.push(row);
    }
    s.close().await;
    let _ = redis.quit().await;
    emit(json!({ "scale": rows }));
    Ok(())
}
