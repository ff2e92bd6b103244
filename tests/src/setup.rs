//! Schedulers as the runtime tests build them: the probe tasks registered
//! explicitly, short leases and retries.

use std::time::Duration;

use scheduler::{JobRequest, JobStatus, Scheduler, SchedulerBuilder, WorkerConfig};

use crate::probe::Probe;
use crate::tasks::{ProbeArgs, ProbeTask, QuickTimeoutTask};

/// A 1 s lease, 300 ms heartbeat, 500 ms grace, 50–200 ms retry backoff.
pub fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(1000),
        heartbeat: Some(Duration::from_millis(300)),
        shutdown_grace: Duration::from_millis(500),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

/// Starts `builder` with a worker when `worker` is given, else producer-only.
pub async fn start_with_worker(
    builder: SchedulerBuilder,
    worker: Option<WorkerConfig>,
) -> Scheduler {
    crate::init_tracing();
    match worker {
        Some(config) => builder.worker(config),
        None => builder.producer_only(),
    }
    .start()
    .await
    .expect("scheduler starts")
}

/// A scheduler with a worker running the probe tasks.
pub async fn worker(url: &str, ns: &str, probe: &Probe) -> Scheduler {
    worker_with(url, ns, probe, fast_worker()).await
}

/// The same, with these worker settings.
pub async fn worker_with(url: &str, ns: &str, probe: &Probe, config: WorkerConfig) -> Scheduler {
    crate::init_tracing();
    Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .register::<QuickTimeoutTask>()
        .provide(probe.clone())
        .worker(config)
        .start()
        .await
        .expect("scheduler starts")
}

/// A producer-only scheduler.
pub async fn producer(url: &str, ns: &str) -> Scheduler {
    Scheduler::builder(url)
        .namespace(ns)
        .register::<ProbeTask>()
        .producer_only()
        .start()
        .await
        .expect("producer starts")
}

/// A probe job recording `arg`.
pub fn probe_job(id: &str, arg: &str) -> JobRequest<ProbeTask> {
    JobRequest::new(ProbeArgs::new(arg)).id(id)
}

/// Polls the status until `want` holds (10 s at most); the last status seen.
pub async fn wait_status(s: &Scheduler, id: &str, want: fn(&JobStatus) -> bool) -> JobStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = s.status(id).await.expect("status");
        if want(&status) || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
