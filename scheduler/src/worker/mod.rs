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
use crate::backend::{Backend, ClaimTicket, ClaimedJob, Finished, Notice, Subscription};
use crate::clock::SystemClock;
use crate::ops::health::HealthState;
use crate::worker::executor::{Executor, StopHandle, StopReason};

pub(crate) mod context;
pub(crate) mod executor;

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
    #[cfg(test)]
    hooks: tests::Hooks,
}

/// Handle kept by the scheduler to shut the worker down.
pub(crate) struct WorkerHandle {
    worker: Arc<Worker>,
    claim_task: JoinHandle<()>,
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
        config.validate()?;
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
            max_result_bytes: backend.config().max_payload_bytes,
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
            #[cfg(test)]
            hooks: tests::Hooks::default(),
        });
        info!(worker = %worker.id, concurrency = worker.config.concurrency, tasks = %worker.executor.registry.describe(), "worker started");
        let tasks = vec![
            worker.supervise("listen", Arc::clone(&worker).listen(notices)),
            worker.supervise("heartbeat", Arc::clone(&worker).heartbeat_loop()),
            worker.supervise("lease watchdog", Arc::clone(&worker).watchdog()),
            worker.supervise("completion", Arc::clone(&worker).complete_loop(rx)),
            worker.supervise(
                "audit",
                crate::ops::audit::audit_loop(
                    Arc::clone(&worker.backend),
                    worker.config.audit_interval,
                    worker.config.lease,
                    worker.health.clone(),
                    worker.stop_all.clone(),
                ),
            ),
        ];
        let claim_task = worker.supervise("claim", Arc::clone(&worker).claim_loop());
        Ok(WorkerHandle {
            worker,
            claim_task,
            tasks,
            close_subscription: close,
        })
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
        let Ok(mut jobs) = self.jobs.lock() else {
            return;
        };
        if let Some(job) = jobs.by_id.get(id).filter(|j| j.generation == generation) {
            if !job.finished {
                info!(
                    job_id = id,
                    generation, "abort requested, dropping the running job"
                );
                job.stop.stop(StopReason::Cancelled);
            }
            return;
        }
        // Perhaps a job of a claim whose reply has not arrived yet: remember it
        // for as long as such a reply can take.
        let now = Instant::now();
        let keep = (self.config.lease + self.backend.config().command_timeout) * 2;
        let early = &mut jobs.early_aborts;
        early.retain(|_, at| now.duration_since(*at) < keep);
        if early.len() >= EARLY_ABORTS_CAP {
            early.clear();
        }
        early.insert((id.to_string(), generation), now);
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

    async fn claim_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        // A failed claim is retried with the same ticket, so that jobs it took
        // before its reply was lost come back instead of waiting out a lease.
        let mut ticket = ClaimTicket::new();
        loop {
            if self.stop_claiming.is_cancelled() {
                if ticket.retry {
                    self.recover_lost_claim(&ticket).await;
                }
                return;
            }
            let free = self.slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = self.job_ended.notified() => continue,
                    _ = self.stop_claiming.cancelled() => continue,
                }
            }
            let sent = Instant::now();
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
                    #[cfg(test)]
                    self.hooks.after_claim(&claim.jobs).await;
                    let claimed = claim.jobs.len();
                    ticket = ClaimTicket::new();
                    self.take(claim.jobs, sent);
                    if self.stop_claiming.is_cancelled() {
                        return;
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
                _ = self.stop_claiming.cancelled() => {}
            }
        }
    }

    /// Registers and starts claimed jobs; once the worker is closing they are
    /// released at once instead (a claim that was in flight when `close()`
    /// began).
    fn take(self: &Arc<Self>, jobs: Vec<ClaimedJob>, sent: Instant) {
        let closing = self.stop_claiming.is_cancelled();
        for job in jobs {
            let stop = self.register(&job, sent);
            if closing {
                stop.stop(StopReason::Shutdown);
            }
            self.spawn_job(job, stop);
        }
    }

    /// Closing after a claim failed: its reply may have been lost with jobs
    /// taken. Ask once for them, and release them.
    async fn recover_lost_claim(self: &Arc<Self>, ticket: &ClaimTicket) {
        let sent = Instant::now();
        match self
            .backend
            .claim(&self.id, CLAIM_BATCH, self.config.lease, ticket)
            .await
        {
            Ok(claim) => self.take(claim.jobs, sent),
            Err(e) => {
                warn!(error = %e, "closing: a claim whose reply was lost could not be asked again; its jobs run after their lease")
            }
        }
    }

    fn spawn_job(self: &Arc<Self>, job: ClaimedJob, stop: StopHandle) {
        // Only this worker's claims take permits, never more than are free;
        // without one (cannot happen) the job is released, never lost.
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok();
        if permit.is_none() {
            stop.stop(StopReason::Shutdown);
        }
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            worker.run_job(job, stop).await;
            drop(permit);
            worker.job_ended.notify_one();
        });
    }

    async fn run_job(self: &Arc<Self>, job: ClaimedJob, stop: StopHandle) {
        match self.executor.run(&job, stop).await {
            Some(finished) => {
                // Keep renewing the lease until the outcome is recorded.
                if let Ok(mut jobs) = self.jobs.lock() {
                    if let Some(entry) = jobs
                        .by_id
                        .get_mut(&job.id)
                        .filter(|r| r.generation == job.generation && r.attempt == job.attempt)
                    {
                        entry.finished = true;
                    }
                }
                if self.completions.send(finished).is_err() {
                    error!("completion channel closed; the job will be re-run after its lease");
                    self.forget(&job.id, job.generation, job.attempt);
                }
            }
            None => self.forget(&job.id, job.generation, job.attempt),
        }
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

    async fn complete_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
        let mut batch: Vec<Finished> = Vec::new();
        loop {
            tokio::select! {
                received = rx.recv() => match received {
                    Some(f) => batch.push(f),
                    None => return,
                },
                // `close()` waited for every outcome it could record.
                _ = self.stop_all.cancelled() => return,
            }
            while batch.len() < COMPLETE_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            match self.record(&batch).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => {}
                // One outcome Redis refuses must not hold back the others:
                // record them one by one, and give up only the refused ones.
                Err(_) if batch.len() > 1 => {
                    for f in &batch {
                        if let Err(e) = self.record(std::slice::from_ref(f)).await {
                            if !e.is_transient() {
                                self.give_up(f, &e);
                            }
                        }
                    }
                }
                Err(e) => self.give_up(&batch[0], &e),
            }
            batch.clear();
        }
    }

    /// Records outcomes, retrying transient failures until the worker stops;
    /// the jobs are forgotten once recorded (or when the worker stops).
    /// Returns the error Redis refused the batch with (not transient), or the
    /// last transient one when the worker stopped first.
    async fn record(&self, batch: &[Finished]) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.backend.complete(batch).await {
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
                    for f in batch {
                        self.forget(&f.id, f.generation, f.attempt);
                    }
                    return Ok(());
                }
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    self.health.degraded(&e.to_string());
                    warn!(error = %e, pending = batch.len(), "recording outcomes failed; retrying");
                    if self.stop_all.is_cancelled() {
                        error!(count = batch.len(), "worker stopped before outcomes were recorded; those jobs re-run after their lease");
                        for f in batch {
                            self.forget(&f.id, f.generation, f.attempt);
                        }
                        return Err(e);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop_all.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// An outcome Redis refused for a reason retrying cannot change: reported,
    /// and the job left to its lease (it runs again elsewhere).
    fn give_up(&self, f: &Finished, e: &Error) {
        let reason = format!(
            "the outcome `{}` of job {} (generation {}, attempt {}) could not be recorded: {e}; the job runs again after its lease",
            f.outcome, f.id, f.generation, f.attempt
        );
        error!(job_id = %f.id, error = %e, "{reason}");
        self.health.alert(&reason);
        self.forget(&f.id, f.generation, f.attempt);
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.heartbeat_interval());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.stop_all.cancelled() => return,
            }
            #[cfg(test)]
            self.hooks.heartbeat_tick();
            let snapshot: Vec<(String, u64, u32)> = match self.jobs.lock() {
                Ok(j) => j
                    .by_id
                    .iter()
                    .map(|(id, r)| (id.clone(), r.generation, r.attempt))
                    .collect(),
                Err(_) => continue,
            };
            if snapshot.is_empty() {
                continue;
            }
            match self.renew(&snapshot).await {
                Ok(()) => self.health.ok(),
                // One lease Redis refuses (say, a record it cannot read) must
                // not cost the others theirs: renew them one by one.
                Err(e) if !e.is_transient() && snapshot.len() > 1 => {
                    warn!(error = %e, "lease renewal refused; renewing job by job");
                    for job in &snapshot {
                        if let Err(e) = self.renew(std::slice::from_ref(job)).await {
                            warn!(job_id = %job.0, error = %e, "lease renewal refused; the job stops when its lease runs out");
                            if e.is_transient() {
                                self.health.degraded(&e.to_string());
                                break;
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

    /// Renews these leases, and applies the answers: a confirmed lease moves
    /// the job's validity deadline, an abort or a lost lease stops the job.
    async fn renew(&self, snapshot: &[(String, u64, u32)]) -> Result<(), Error> {
        let sent = Instant::now();
        let codes = self.backend.renew(self.config.lease, snapshot).await?;
        let valid_until = sent + self.config.lease_validity();
        let Ok(mut jobs) = self.jobs.lock() else {
            return Ok(());
        };
        for ((id, generation, attempt), code) in snapshot.iter().zip(codes) {
            let Some(job) = jobs
                .by_id
                .get_mut(id)
                .filter(|j| j.generation == *generation && j.attempt == *attempt)
            else {
                continue;
            };
            match code.as_str() {
                "ok" => job.extend_validity(valid_until),
                "cancel" => {
                    job.extend_validity(valid_until);
                    if !job.finished {
                        job.stop.stop(StopReason::Cancelled);
                    }
                }
                _ => {
                    if !job.finished {
                        job.stop.stop(StopReason::LeaseLost);
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops every running job whose lease could not be confirmed in time,
    /// whatever the renewal calls are doing (they may hang up to the command
    /// timeout): after its validity deadline Redis may give the job to
    /// another worker, which must never run it at the same time as this one.
    async fn watchdog(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let mut next = now + WATCHDOG_MAX_SLEEP;
            if let Ok(jobs) = self.jobs.lock() {
                for (id, job) in &jobs.by_id {
                    if job.finished || job.stop.is_stopped() {
                        continue;
                    }
                    if job.valid_until <= now {
                        warn!(job_id = %id, generation = job.generation, attempt = job.attempt, "lease not confirmed in time (redis unreachable or slow); dropping the job before another worker can take it");
                        job.stop.stop(StopReason::LeaseLost);
                    } else {
                        next = next.min(job.valid_until);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.job_added.notified() => {}
                _ = self.stop_all.cancelled() => return,
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
