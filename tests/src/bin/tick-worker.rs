//! A worker process for the cross-process periodic test: its one task,
//! `beat`, is periodic (`#[task(cron = "* * * * * *")]`, every second), so
//! every process stores the same code schedule at start-up and plans its
//! ticks. Each run appends a `start` and, 300 ms later, an `end` record to
//! the Redis list `tick-runs` of the same server, stamped with the Redis
//! clock (`TIME`, in one script with the `RPUSH`): a SIGKILL loses at most
//! the record not yet written, and the test reads what ran from Redis.
//!
//! Usage: `tick-worker REDIS_URL NAMESPACE LEASE_MS HEARTBEAT_MS CONCURRENCY`
//! (the arguments of `probe-worker`, so `ChildWorker` spawns it); prints
//! `{"event":"ready"}` once started. SIGTERM closes it gracefully.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::Duration;

use fred::prelude::{ClientLike, LuaInterface};
use scheduler::{Dep, JobContext, Scheduler, WorkerConfig};

/// The list the runs are recorded in.
const RUNS_KEY: &str = "tick-runs";
/// How long one run takes: long enough for the test to kill a process in
/// the middle of one.
const RUN_TIME: Duration = Duration::from_millis(300);
/// Appends `ARGV[1]` (a JSON object without its closing brace) with the
/// Redis time in microseconds as `t_us`.
const RECORD: &str = r#"
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('RPUSH', KEYS[1], ARGV[1] .. string.format(',"t_us":%d}', us))
"#;

/// The connection runs are recorded through.
struct RunLog(fred::clients::Client);

impl RunLog {
    async fn record(&self, event: &str, ctx: &JobContext, tick_ms: i64) -> Result<(), String> {
        let head = serde_json::json!({
            "event": event,
            "tick_ms": tick_ms,
            "pid": std::process::id(),
            "generation": ctx.generation(),
            "attempt": ctx.attempt(),
        })
        .to_string();
        let open = head.strip_suffix('}').unwrap_or(&head).to_string();
        self.0
            .eval::<i64, _, _, _>(RECORD, vec![RUNS_KEY], vec![open])
            .await
            .map(drop)
            .map_err(|e| format!("recording the run failed: {e}"))
    }
}

/// Every second: records its start and its end, with the tick it runs for.
#[scheduler::task(cron = "* * * * * *")]
async fn beat(ctx: JobContext, log: Dep<RunLog>) -> Result<(), String> {
    let tick_ms = ctx
        .planned_tick()
        .ok_or("not run for a tick")?
        .timestamp_millis();
    log.record("start", &ctx, tick_ms).await?;
    tokio::time::sleep(RUN_TIME).await;
    log.record("end", &ctx, tick_ms).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: tick-worker REDIS_URL NAMESPACE LEASE_MS HEARTBEAT_MS CONCURRENCY");
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 { args[i].parse().unwrap() };
    scheduler_tests::init_tracing();
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(&args[1]).unwrap(),
        None,
        None,
        None,
    );
    client.init().await.unwrap();
    let config = WorkerConfig {
        lease: Duration::from_millis(number(3)),
        heartbeat: Some(Duration::from_millis(number(4))),
        concurrency: number(5) as usize,
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let scheduler = scheduler_tests::worker_process::start_or_exit(
        "tick-worker",
        Scheduler::builder(args[1].clone())
            .namespace(args[2].clone())
            .provide(RunLog(client))
            .worker(config),
    )
    .await;
    scheduler_tests::worker_process::serve_until_terminated(
        scheduler,
        &scheduler_tests::worker_process::ready_with_pid(),
    )
    .await;
}
