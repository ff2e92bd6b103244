//! The worker: claims due jobs, runs them inside the caller's tokio runtime,
//! renews their leases and records how they ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backend::{Backend, ClaimTicket, ClaimedJob, Finished, Notice, Subscription};
use crate::clock::SystemClock;
use crate::config::WorkerConfig;
use crate::deps::Dependencies;
use crate::error::Error;
use crate::executor::{Executor, StopHandle, StopReason};
use crate::health::HealthState;
use crate::registry::Registry;

/// Most jobs claimed by one script call.
const CLAIM_BATCH: usize = 100;
/// Most completions recorded by one script call.
const COMPLETE_BATCH: usize = 100;

struct Running {
    generation: u64,
    attempt: u32,
    stop: StopHandle,
}

enum CompletionMsg {
    Finished(Finished),
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Worker {
    backend: Arc<dyn Backend>,
    executor: Executor,
    config: WorkerConfig,
    id: String,
    running: Mutex<HashMap<String, Running>>,
    slots: Arc<Semaphore>,
    wake: Notify,
    job_ended: Notify,
    stop_claiming: CancellationToken,
    stop_all: CancellationToken,
    completions: mpsc::UnboundedSender<CompletionMsg>,
    health: HealthState,
}

/// Handle kept by the scheduler to shut the worker down.
pub(crate) struct WorkerHandle {
    worker: Arc<Worker>,
    tasks: Vec<JoinHandle<()>>,
    close_subscription: Box<dyn FnOnce() -> crate::backend::BoxFuture<'static, ()> + Send>,
}

impl Worker {
    pub(crate) async fn start(
        backend: Arc<dyn Backend>,
        registry: Registry,
        deps: Dependencies,
        config: WorkerConfig,
        health: HealthState,
    ) -> Result<WorkerHandle, Error> {
        if config.concurrency == 0 {
            return Err(Error::Config(
                "worker concurrency must be at least 1".into(),
            ));
        }
        if config.heartbeat_interval() >= config.lease {
            return Err(Error::Config(
                "the heartbeat interval must be shorter than the lease".into(),
            ));
        }
        let Subscription { notices, close } = backend.subscribe().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let executor = Executor {
            registry,
            deps,
            config: config.clone(),
            default_timeout: backend.config().default_timeout,
            worker_id: id.clone(),
            clock: Arc::new(SystemClock),
        };
        let worker = Arc::new(Worker {
            id,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            backend,
            executor,
            config,
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            job_ended: Notify::new(),
            stop_claiming: CancellationToken::new(),
            stop_all: CancellationToken::new(),
            completions: tx,
            health,
        });
        info!(worker = %worker.id, concurrency = worker.config.concurrency, tasks = %worker.executor.registry.describe(), "worker started");
        let tasks = vec![
            tokio::spawn(Arc::clone(&worker).listen(notices)),
            tokio::spawn(Arc::clone(&worker).claim_loop()),
            tokio::spawn(Arc::clone(&worker).heartbeat_loop()),
            tokio::spawn(Arc::clone(&worker).complete_loop(rx)),
            tokio::spawn(crate::audit::audit_loop(
                Arc::clone(&worker.backend),
                worker.config.audit_interval,
                worker.config.lease,
                worker.health.clone(),
                worker.stop_all.clone(),
            )),
        ];
        Ok(WorkerHandle {
            worker,
            tasks,
            close_subscription: close,
        })
    }

    fn running_count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Wake-ups and abort signals from the backend.
    async fn listen(self: Arc<Self>, mut notices: mpsc::UnboundedReceiver<Notice>) {
        loop {
            tokio::select! {
                _ = self.stop_all.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(Notice::Wake) => self.wake.notify_one(),
                    Some(Notice::Abort { generation, id }) => self.abort_local(&id, generation),
                    None => return,
                },
            }
        }
    }

    fn abort_local(&self, id: &str, generation: u64) {
        if let Ok(running) = self.running.lock() {
            if let Some(job) = running.get(id).filter(|j| j.generation == generation) {
                info!(
                    job_id = id,
                    generation, "abort requested, dropping the running job"
                );
                job.stop.stop(StopReason::Cancelled);
            }
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        // A failed claim is retried with the same ticket, so that jobs it took
        // before its reply was lost come back instead of waiting out a lease.
        let mut ticket = ClaimTicket::new();
        loop {
            if self.stop_claiming.is_cancelled() {
                return;
            }
            let free = self.slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = self.job_ended.notified() => continue,
                    _ = self.stop_claiming.cancelled() => return,
                }
            }
            let claim = self
                .backend
                .claim(&self.id, free.min(CLAIM_BATCH), self.config.lease, &ticket)
                .await;
            let sleep_for = match claim {
                Ok(claim) => {
                    self.health.ok();
                    backoff = Duration::from_millis(50);
                    for (id, reason) in &claim.rejected {
                        warn!(job_id = %id, reason = %reason, "unreadable job dead-lettered");
                    }
                    let claimed = claim.jobs.len();
                    ticket = ClaimTicket::new();
                    for job in claim.jobs {
                        self.spawn_job(job);
                    }
                    if claimed == free.min(CLAIM_BATCH) && claimed > 0 {
                        continue;
                    }
                    let until_next = claim
                        .next_wake_ms
                        .map(|t| Duration::from_millis((t - claim.now_ms).max(1) as u64))
                        .unwrap_or(self.config.max_idle);
                    until_next.min(self.config.max_idle)
                }
                Err(e) => {
                    self.health.degraded(&e.to_string());
                    warn!(error = %e, "claiming failed; retrying");
                    // The claim may have run with its reply lost: ask for its jobs.
                    ticket.retry = true;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = self.wake.notified() => {}
                _ = self.job_ended.notified() => {}
                _ = self.stop_claiming.cancelled() => return,
            }
        }
    }

    fn spawn_job(self: &Arc<Self>, job: ClaimedJob) {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Cannot happen (only this loop acquires), but never lose the job:
                // release it so it runs elsewhere.
                self.send(Finished {
                    id: job.id,
                    generation: job.generation,
                    attempt: job.attempt,
                    outcome: "release",
                    text: String::new(),
                    retry_delay_ms: 0,
                });
                return;
            }
        };
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            worker.run_job(job).await;
            drop(permit);
            worker.job_ended.notify_one();
        });
    }

    fn send(&self, finished: Finished) {
        if self
            .completions
            .send(CompletionMsg::Finished(finished))
            .is_err()
        {
            error!("completion channel closed; the job will be re-run after its lease");
        }
    }

    async fn run_job(self: &Arc<Self>, job: ClaimedJob) {
        let outcome = self
            .executor
            .run(&job, |stop| {
                if let Ok(mut running) = self.running.lock() {
                    let entry = Running {
                        generation: job.generation,
                        attempt: job.attempt,
                        stop,
                    };
                    if let Some(previous) = running.insert(job.id.clone(), entry) {
                        // Our older attempt of this job lost its lease and still runs here.
                        previous.stop.stop(StopReason::LeaseLost);
                    }
                }
            })
            .await;
        self.forget(&job.id, job.generation, job.attempt);
        if let Some(finished) = outcome {
            self.send(finished);
        }
    }

    fn forget(&self, id: &str, generation: u64, attempt: u32) {
        if let Ok(mut running) = self.running.lock() {
            let ours = running
                .get(id)
                .is_some_and(|r| r.generation == generation && r.attempt == attempt);
            if ours {
                running.remove(id);
            }
        }
    }

    async fn complete_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<CompletionMsg>) {
        let mut batch: Vec<Finished> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            if batch.is_empty() {
                match rx.recv().await {
                    Some(CompletionMsg::Finished(f)) => batch.push(f),
                    Some(CompletionMsg::Flush(ack)) => {
                        let _ = ack.send(());
                        continue;
                    }
                    None => return,
                }
            }
            while batch.len() < COMPLETE_BATCH {
                match rx.try_recv() {
                    Ok(CompletionMsg::Finished(f)) => batch.push(f),
                    Ok(CompletionMsg::Flush(ack)) => {
                        flushes.push(ack);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let mut backoff = Duration::from_millis(50);
            loop {
                match self.backend.complete(&batch).await {
                    Ok(codes) => {
                        self.health.ok();
                        for (f, code) in batch.iter().zip(codes.iter()) {
                            if code == "stale" {
                                warn!(job_id = %f.id, generation = f.generation, attempt = f.attempt, "outcome rejected: the job is no longer ours (lease taken over, cancelled or replaced)");
                            } else if code == "failed" {
                                warn!(job_id = %f.id, generation = f.generation, reason = %f.text, "job failed for good (dead-lettered)");
                            } else if code == "retrying" {
                                info!(job_id = %f.id, attempt = f.attempt, delay_ms = f.retry_delay_ms, "job will be retried");
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        self.health.degraded(&e.to_string());
                        warn!(error = %e, pending = batch.len(), "recording outcomes failed; retrying");
                        if self.stop_all.is_cancelled() {
                            error!(count = batch.len(), "worker stopped before outcomes were recorded; those jobs re-run after their lease");
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            batch.clear();
            for ack in flushes.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.heartbeat_interval());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.stop_all.cancelled() => return,
            }
            let snapshot: Vec<(String, u64, u32)> = match self.running.lock() {
                Ok(r) => r
                    .iter()
                    .map(|(id, j)| (id.clone(), j.generation, j.attempt))
                    .collect(),
                Err(_) => continue,
            };
            if snapshot.is_empty() {
                continue;
            }
            match self.backend.renew(self.config.lease, &snapshot).await {
                Ok(codes) => {
                    self.health.ok();
                    for ((id, generation, attempt), code) in snapshot.iter().zip(codes) {
                        let reason = match code.as_str() {
                            "cancel" => StopReason::Cancelled,
                            "lost" => StopReason::LeaseLost,
                            _ => continue,
                        };
                        if let Ok(running) = self.running.lock() {
                            if let Some(job) = running
                                .get(id)
                                .filter(|j| j.generation == *generation && j.attempt == *attempt)
                            {
                                job.stop.stop(reason);
                            }
                        }
                    }
                }
                Err(e) => {
                    self.health.degraded(&e.to_string());
                    warn!(error = %e, "lease renewal failed");
                }
            }
        }
    }
}

impl WorkerHandle {
    /// Graceful stop: no new claims, running jobs get `grace` to finish, then are
    /// aborted and released so another worker takes them at once.
    pub(crate) async fn close(self) {
        let worker = &self.worker;
        worker.stop_claiming.cancel();
        let deadline = tokio::time::Instant::now() + worker.config.shutdown_grace;
        while worker.running_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = worker.job_ended.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        if let Ok(running) = worker.running.lock() {
            for job in running.values() {
                job.stop.stop(StopReason::Shutdown);
            }
        }
        let release_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while worker.running_count() > 0 && tokio::time::Instant::now() < release_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (ack, done) = oneshot::channel();
        if worker.completions.send(CompletionMsg::Flush(ack)).is_ok() {
            let limit = worker.backend.config().command_timeout * 3;
            if tokio::time::timeout(limit, done).await.is_err() {
                error!(
                    "outcomes not recorded before shutdown; those jobs re-run after their lease"
                );
            }
        }
        worker.stop_all.cancel();
        for task in self.tasks {
            task.abort();
        }
        (self.close_subscription)().await;
        info!(worker = %worker.id, "worker stopped");
    }
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
