//! `cluster-drain`: issue 19's sharded drain. One namespace split over 1, 2,
//! 3 and 6 shards on a Redis Cluster: the drain rate of worker processes
//! (this binary's `worker --shards k`) and the Redis CPU per drained job,
//! summed over every node. Not part of the peer protocol; run it on a
//! cluster of its own:
//!
//! ```text
//! scheduler-bench --redis-url redis-cluster://127.0.0.1:7001?node=127.0.0.1:7002&node=127.0.0.1:7003 \
//!     cluster-drain --nodes 7001,7002,7003 --shards 1,2,3,6 --n 20000 --workers 1 --concurrency 50
//! ```
//!
//! `--task limited` drains jobs of a task with a concurrency limit that 50
//! in flight never reaches, in a queue of its own: on a sharded namespace
//! each start is granted by shard 0 and each end released there, so the
//! rows show what limits across shards cost (one shard: counted in place).
//!
//! Each round starts the workers, preloads N no-op jobs due at one instant
//! 1.5 s ahead, and measures from that instant until no job of the namespace
//! is deferred, queued or running (`Scheduler::counts`, summed over the
//! shards). Each round uses its own namespace.

use std::time::{Duration, Instant};

use scheduler::chrono::{TimeDelta, Utc};
use scheduler::{Error, Scheduler};
use serde_json::json;

use crate::args::Args;
use crate::scale::{cpu_seconds, redis_pid, spawn_worker_with, stop_workers, wait_drained};
use crate::{bench_job, emit, side_connection};

/// The limited task of `--task limited`: a limit never reached.
#[scheduler::task(queue = "limited", concurrency = 100000)]
async fn limited_noop(i: u64) -> Result<(), String> {
    let _ = i;
    Ok(())
}

/// The numbers in a comma-separated flag.
fn list<T: std::str::FromStr>(a: &Args, flag: &str, default: &str) -> Vec<T> {
    a.get(flag)
        .unwrap_or(default)
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

pub(crate) async fn cluster_drain(a: &Args) -> Result<(), Error> {
    let n = (a.num("n") as usize).max(1);
    let concurrency = a.get("concurrency").unwrap_or("50").to_string();
    let workers = (a.num("workers") as usize).max(1);
    let shard_counts: Vec<u16> = list(a, "shards", "1,2,3,6");
    let ports: Vec<u16> = list(a, "nodes", "");
    let mut pids = Vec::new();
    for port in &ports {
        let node = side_connection(&format!("redis://127.0.0.1:{port}")).await?;
        pids.push(redis_pid(&node).await?);
        let _ = fred::prelude::ClientLike::quit(&node).await;
    }
    let redis_cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let limited = a.get("task") == Some("limited");
    let mut rows = Vec::new();
    for (round, shards) in shard_counts.iter().copied().enumerate() {
        let namespace = format!("drain-{}-{round}", Utc::now().timestamp_millis());
        let shards_flag = shards.to_string();
        let mut children = Vec::new();
        for _ in 0..workers {
            let mut flags = vec!["--shards", &shards_flag, "--namespace", &namespace];
            if limited {
                flags.extend(["--queues", "limited"]);
            }
            children.push(spawn_worker_with(&a.url, &concurrency, &flags)?);
        }
        let s = Scheduler::builder(a.url.as_str())
            .namespace(&namespace)
            .shards(shards)
            .producer_only()
            .start()
            .await?;
        let due_at = Utc::now() + TimeDelta::milliseconds(1500);
        for start in (0..n).step_by(1000) {
            let ids = start..(start + 1000).min(n);
            if limited {
                let jobs = ids.map(|i| limited_noop::job(i as u64).id(format!("c{i}")).at(due_at));
                s.enqueue_many(jobs).await?;
            } else {
                let jobs = ids.map(|i| {
                    bench_job::job("noop".into(), 0.0, String::new())
                        .id(format!("c{i}"))
                        .at(due_at)
                });
                s.enqueue_many(jobs).await?;
            }
        }
        let wait = (due_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let t0 = Instant::now();
        let redis_cpu0 = redis_cpu();
        let workers_cpu0: f64 = children.iter().map(|c| cpu_seconds(c.id())).sum();
        wait_drained(&s, Duration::from_secs(120), Duration::from_millis(20)).await?;
        let elapsed = t0.elapsed().as_secs_f64();
        let redis_used = redis_cpu() - redis_cpu0;
        let workers_used: f64 =
            children.iter().map(|c| cpu_seconds(c.id())).sum::<f64>() - workers_cpu0;
        stop_workers(&mut children);
        s.close().await;
        let row = json!({
            "task": if limited { "limited" } else { "noop" },
            "shards": shards,
            "workers": workers,
            "concurrency": concurrency,
            "n": n,
            "drain_jobs_per_s": (n as f64 / elapsed).round(),
            "redis_cpu_us_per_job": redis_used / n as f64 * 1e6,
            "workers_cpu_us_per_job": workers_used / n as f64 * 1e6,
            "redis_cpu_share": redis_used / elapsed,
            "workers_cpu_share": workers_used / elapsed,
        });
        emit(row.clone());
        rows.push(row);
    }
    emit(json!({ "cluster_drain": rows }));
    Ok(())
}
