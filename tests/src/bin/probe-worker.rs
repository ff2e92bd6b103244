//! A worker process for the fault tests: runs the probe tasks and reports every
//! start and end as a JSON line on stdout, so the parent test can SIGKILL,
//! SIGSTOP and SIGCONT it and still know exactly what ran.
//!
//! Usage: `probe-worker REDIS_URL NAMESPACE LEASE_MS HEARTBEAT_MS CONCURRENCY`;
//! with `PROBE_SHARDS=n` in its environment it serves a namespace split over
//! n shards, and leaves out the limited probes (refused on a sharded one).
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::time::Duration;

use scheduler::{Scheduler, WorkerConfig};
use scheduler_tests::tasks::{LimitedProbe, ProbeTask, QuickTimeoutTask, RatedProbe};
use scheduler_tests::Probe;

// A current-thread runtime, so that a blocking job freezes the heartbeat too.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number =
        |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let namespace = args.get(2).cloned().unwrap_or_else(|| "probe".into());
    let config = WorkerConfig {
        lease: Duration::from_millis(number(3, 1000)),
        heartbeat: Some(Duration::from_millis(number(4, 300))),
        concurrency: number(5, 10) as usize,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    scheduler_tests::init_tracing();
    let shards: Option<u16> = std::env::var("PROBE_SHARDS")
        .ok()
        .and_then(|n| n.parse().ok());
    let builder = Scheduler::builder(url)
        .namespace(namespace)
        .register::<ProbeTask>()
        .register::<QuickTimeoutTask>()
        .register::<LimitedProbe>()
        .register::<RatedProbe>()
        .provide(Probe::printing())
        .worker(config);
    let builder = match shards {
        Some(n) => builder.shards(n),
        None => builder,
    };
    let scheduler = scheduler_tests::worker_process::start_or_exit("probe-worker", builder).await;
    scheduler_tests::worker_process::serve_until_terminated(
        scheduler,
        &scheduler_tests::worker_process::ready_with_pid(),
    )
    .await;
}
