//! The worker: claims due jobs, runs them inside the caller's tokio runtime,
//! renews their leases and records how they ended.
//!
//! A job is tracked from the moment its claim returns until its outcome is
//! recorded (or it is given up): its lease is renewed all that time, also
//! after its future ended while the outcome waits to be written. A watchdog,
//! independent of the renewal calls (which may hang), drops a job whose lease
//! could not be confirmed in time (see [`WorkerConfig::lease_margin`]).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::config::WorkerConfig;
use crate::api::deps::Dependencies;
use crate::api::error::Error;
use crate::api::registry::Registry;
use crate::backend::{Backend, ClaimedJob, CloseFn, Finished, Subscription};
use crate::clock::SystemClock;
use crate::ops::health::HealthState;
use crate::ops::metrics::Metrics;
use crate::periodic::planner::Planner;
use crate::worker::context::ContextBackend;
use crate::worker::executor::{Executor, StopHandle, StopReason};

mod claim;
pub(crate) mod context;
pub(crate) mod executor;
mod heartbeat;
mod notices;
mod record;
pub(crate) mod serving;

/// Most jobs claimed by one script call.
const CLAIM_BATCH: usize = 100;
/// Most completions recorded by one script call.
const COMPLETE_BATCH: usize = 100;
/// Longest sleep of the lease watchdog (it also wakes when a job is added).
const WATCHDOG_MAX_SLEEP: Duration = Duration::from_secs(1);
/// Most early abort signals remembered at once.
const EARLY_ABORTS_CAP: usize = 10_000;

impl Running {
    /// A renewal confirmed the lease until `until`.
    fn extend_validity(&mut self, until: Instant) {
        self.valid_until = self.valid_until.max(until);
        self.stop.extend_validity(until);
    }
}

/// A job this worker claimed and has not finished with.
struct Running {
    generation: u64,
    attempt: u32,
    stop: StopHandle,
    /// Until when the lease is known to be ours (local monotonic time): the
    /// send time of the claim or of the last renewal Redis confirmed, plus
    /// the lease minus its safety margin.
    valid_until: Instant,
    /// The job's future has ended; its outcome waits to be recorded.
    finished: bool,
}

#[derive(Default)]
struct Jobs {
    by_id: HashMap<String, Running>,
    /// Abort signals that named no job running here, by (id, generation),
    /// with when they came: a claim's reply can arrive after the abort of one
    /// of its jobs, which must then never start.
    early_aborts: HashMap<(String, u64), Instant>,
}

pub(crate) struct Worker {
    backend: Arc<dyn Backend>,
    executor: Executor,
    config: WorkerConfig,
    id: String,
    jobs: Mutex<Jobs>,
    slots: Arc<Semaphore>,
    wake: Notify,
    job_ended: Notify,
    /// A job was added: the watchdog recomputes its next deadline.
    job_added: Notify,
    stop_claiming: CancellationToken,
    stop_all: CancellationToken,
    completions: mpsc::UnboundedSender<Finished>,
    health: HealthState,
    /// This process's planner, poked when the schedules change.
    planner: Planner,
    /// The queues, tasks and limits its claims ask for.
    serving: serving::ServingPlan,
    #[cfg(test)]
    hooks: tests::Hooks,
}

/// Handle kept by the scheduler to shut the worker down.
pub(crate) struct WorkerHandle {
    worker: Arc<Worker>,
    claim_task: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    close_subscription: CloseFn,
}

impl Worker {
    pub(crate) async fn start(
        backend: Arc<dyn Backend>,
        registry: Registry,
        deps: Dependencies,
        config: WorkerConfig,
        health: HealthState,
        metrics: Metrics,
        // The process could not store its code schedules at start-up: the
        // planner does it before its first pass.
        code_schedules_pending: bool,
    ) -> Result<WorkerHandle, Error> {
        config.validate()?;
        let Subscription { notices, close } = backend.subscribe().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let serving = serving::ServingPlan::new(&config.queues, &registry);
        let mut planner = Planner::new(Arc::clone(&backend), registry.clone());
        if code_schedules_pending {
            planner = planner.with_code_schedules_pending();
        }
        let executor = Executor {
            registry,
            deps,
            config: config.clone(),
            default_timeout: backend.config().default_timeout,
            worker_id: id.clone(),
            clock: Arc::new(SystemClock),
            max_result_bytes: backend.config().max_payload_bytes,
            metrics,
            backend: ContextBackend(Arc::clone(&backend)),
        };
        let worker = Arc::new(Worker {
            id,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            backend,
            executor,
            config,
            jobs: Mutex::new(Jobs::default()),
            wake: Notify::new(),
            job_ended: Notify::new(),
            job_added: Notify::new(),
            stop_claiming: CancellationToken::new(),
            stop_all: CancellationToken::new(),
            completions: tx,
            health,
            planner: planner.clone(),
            serving,
            #[cfg(test)]
            hooks: tests::Hooks::default(),
        });
        info!(worker = %worker.id, concurrency = worker.config.concurrency, queues = ?worker.serving.queues(), tasks = %worker.executor.registry.describe(), "worker started");
        let tasks = vec![
            worker.supervise("listen", Arc::clone(&worker).listen(notices)),
            worker.supervise("heartbeat", Arc::clone(&worker).heartbeat_loop()),
            worker.supervise("lease watchdog", Arc::clone(&worker).watchdog()),
            worker.supervise("completion", Arc::clone(&worker).complete_loop(rx)),
            worker.supervise(
                "gauges",
                crate::ops::metrics::gauge_loop(
                    Arc::clone(&worker.backend),
                    worker.executor.metrics.clone(),
                    crate::ops::metrics::GAUGE_INTERVAL,
                    worker.stop_all.clone(),
                ),
            ),
            worker.supervise(
                "audit",
                crate::ops::audit::audit_loop(
                    Arc::clone(&worker.backend),
                    worker.config.audit_interval,
                    worker.config.lease,
                    worker.health.clone(),
                    worker.stop_all.clone(),
                    worker.stop_claiming.clone(),
                ),
            ),
        ];
        let mut tasks = tasks;
        // The planner's first pass runs before this worker claims: a missed
        // tick that the schedule's policy drops is removed before it can start.
        if let Err(e) = planner.pass().await {
            warn!(error = %e, "planning periodic tasks at start failed; the planner tries again");
        }
        tasks.push(worker.supervise(
            "planner",
            planner.run(worker.config.max_idle, worker.stop_all.clone()),
        ));
        tasks.push(worker.supervise("presence", Arc::clone(&worker).presence_loop()));
        let claim_task = worker.supervise("claim", Arc::clone(&worker).claim_loop());
        Ok(WorkerHandle {
            worker,
            claim_task,
            tasks,
            close_subscription: close,
        })
    }

    /// Announces the queues this worker serves, every
    /// [`PRESENCE_INTERVAL`](crate::api::routing::PRESENCE_INTERVAL), for
    /// `Scheduler::queues`. A failed announcement is logged and tried again
    /// at the next tick (it is information, not a lease).
    async fn presence_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(crate::api::routing::PRESENCE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.stop_all.cancelled() => return,
            }
            let announced = self
                .backend
                .announce_worker(
                    &self.id,
                    self.serving.queues(),
                    Some(crate::api::routing::PRESENCE_TTL),
                )
                .await;
            if let Err(e) = announced {
                tracing::debug!(error = %e, "announcing the worker's queues failed; trying again");
            }
        }
    }

    /// Runs one of the worker's own tasks; if it panics, or returns before
    /// the worker stops, the worker reports itself broken and stops claiming.
    fn supervise(
        self: &Arc<Self>,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            let ended = AssertUnwindSafe(task).catch_unwind().await;
            let stopping = if name == "claim" {
                worker.stop_claiming.is_cancelled()
            } else {
                worker.stop_all.is_cancelled()
            };
            match ended {
                Ok(()) if stopping => {}
                Ok(()) => worker.task_died(name, "it returned unexpectedly"),
                Err(panic) => {
                    worker.task_died(name, &format!("it panicked: {}", panic_message(&*panic)))
                }
            }
        })
    }

    /// An internal task died: no more claims, health degraded for good. When
    /// the jobs' supervision is gone (heartbeat, watchdog, completions), the
    /// jobs are dropped without an outcome, so that their leases expire and
    /// other workers run them.
    fn task_died(&self, name: &'static str, how: &str) {
        let reason = format!(
            "the worker's {name} task stopped ({how}); this worker claims no more jobs and must be restarted"
        );
        error!(worker = %self.id, "{reason}");
        self.health.broken(&reason);
        self.stop_claiming.cancel();
        if matches!(name, "claim" | "listen") {
            return;
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            for job in jobs.by_id.values() {
                job.stop.stop(StopReason::LeaseLost);
            }
            jobs.by_id.clear();
        }
    }

    /// Jobs claimed whose future has not ended yet.
    fn executing_count(&self) -> usize {
        self.jobs
            .lock()
            .map(|j| j.by_id.values().filter(|r| !r.finished).count())
            .unwrap_or(0)
    }

    /// Jobs claimed whose outcome is not recorded yet.
    fn tracked_count(&self) -> usize {
        self.jobs.lock().map(|j| j.by_id.len()).unwrap_or(0)
    }

    /// Starts tracking a claimed job (claim sent at `sent`): its lease is
    /// renewed and an abort stops it from now on.
    fn register(&self, job: &ClaimedJob, sent: Instant) -> StopHandle {
        let stop = StopHandle::new();
        if let Ok(mut jobs) = self.jobs.lock() {
            if jobs
                .early_aborts
                .remove(&(job.id.clone(), job.generation))
                .is_some()
            {
                info!(job_id = %job.id, generation = job.generation, "abort requested before the job started");
                stop.stop(StopReason::Cancelled);
            }
            let valid_until = sent + self.config.lease_validity();
            stop.extend_validity(valid_until);
            let entry = Running {
                generation: job.generation,
                attempt: job.attempt,
                stop: stop.clone(),
                valid_until,
                finished: false,
            };
            if let Some(previous) = jobs.by_id.insert(job.id.clone(), entry) {
                // Our older attempt of this job lost its lease and still runs here.
                previous.stop.stop(StopReason::LeaseLost);
            }
        }
        self.job_added.notify_one();
        stop
    }

    fn forget(&self, id: &str, generation: u64, attempt: u32) {
        if let Ok(mut jobs) = self.jobs.lock() {
            let ours = jobs
                .by_id
                .get(id)
                .is_some_and(|r| r.generation == generation && r.attempt == attempt);
            if ours {
                jobs.by_id.remove(id);
            }
        }
    }
}

impl WorkerHandle {
    /// Graceful stop: no new claims (a claim in flight is waited for and its
    /// jobs released), running jobs get `shutdown_grace` to finish, then are
    /// aborted and released so another worker takes them at once. Leases are
    /// renewed until every job's outcome or release is recorded.
    pub(crate) async fn close(self) {
        let worker = &self.worker;
        worker.stop_claiming.cancel();
        let command_timeout = worker.backend.config().command_timeout;
        let grace_end = Instant::now() + worker.config.shutdown_grace;
        // A claim in flight ends within the command timeout; a second
        // chance to recover the jobs of a claim whose reply was lost gets
        // what is left of one more second.
        let claim_limit = Instant::now() + command_timeout + Duration::from_secs(1);
        let mut claim_task = self.claim_task;
        if tokio::time::timeout_at(claim_limit, &mut claim_task)
            .await
            .is_err()
        {
            error!("closing: a claim did not end in time; jobs it took run after their lease");
            claim_task.abort();
        }
        while worker.executing_count() > 0 && Instant::now() < grace_end {
            tokio::select! {
                _ = worker.job_ended.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        if let Ok(jobs) = worker.jobs.lock() {
            for job in jobs.by_id.values().filter(|j| !j.finished) {
                job.stop.stop(StopReason::Shutdown);
            }
        }
        let record_limit = Instant::now() + (command_timeout * 3).max(Duration::from_secs(2));
        while worker.tracked_count() > 0 && Instant::now() < record_limit {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = worker.tracked_count();
        if left > 0 {
            error!(
                count = left,
                "outcomes not recorded before shutdown; those jobs re-run after their lease"
            );
        }
        worker.stop_all.cancel();
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        (self.close_subscription)().await;
        // Withdrawn at once, so `Scheduler::queues` stops counting it.
        if let Err(e) = worker
            .backend
            .announce_worker(&worker.id, worker.serving.queues(), None)
            .await
        {
            warn!(error = %e, "closing: the worker's announcement could not be withdrawn; it expires by itself");
        }
        info!(worker = %worker.id, "worker stopped");
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

#[cfg(test)]
mod tests;
