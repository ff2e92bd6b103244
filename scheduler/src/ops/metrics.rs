//! Numbers to alert on, through the [`metrics`] facade: the application
//! installs the recorder it wants (a Prometheus exporter, say) **before it
//! starts the scheduler**, which registers its counters and histograms once
//! per task and updates them with an atomic operation each.
//!
//! Every metric carries the labels `namespace`, and `task` and `queue` where
//! a job is concerned (`queue` is `default` for every job until queues
//! exist). Names and meanings are listed in the README ("Metrics"); each
//! `describe_*` below says the same.
//!
//! - Counters, by the process where the event happened: `enqueued`,
//!   `duplicate` and `replaced` where the job was enqueued; `cancelled`
//!   where a job that had not started was removed, and where a running one
//!   ended cancelled; `started`, `completed`, `failed`, `retried`,
//!   `dead_lettered` and `released` on the worker, once its script recorded
//!   the outcome (an outcome refused as stale counts nothing).
//! - Histograms, in seconds: **lateness** (the recorded start, by the
//!   Redis clock, minus the time the attempt was due), **queue wait** (the
//!   recorded start minus the enqueue: it includes the deferral asked for)
//!   and **run** time (the task's future, on the worker's clock).
//! - Gauges, per namespace and queue: jobs deferred, queued, running and
//!   dead-lettered, read from the sizes of the namespace's own indexes (no
//!   scan; see [`Scheduler::counts`](crate::Scheduler::counts)), refreshed by
//!   each worker every few seconds. Every process of a namespace reports the
//!   same values: aggregate them with `max`, not `sum`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use metrics::{Counter, Histogram, Unit};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::api::job::{EnqueueOutcome, JobCounts, ReplaceOutcome};
use crate::backend::{Backend, ClaimedJob, Finished};
use crate::ops::activity::ActivityRecorder;

/// The queue label of every job until queues exist.
pub(crate) const DEFAULT_QUEUE: &str = "default";

/// Counters and histograms of one task.
struct TaskMetrics {
    enqueued: Counter,
    duplicate: Counter,
    replaced: Counter,
    cancelled: Counter,
    started: Counter,
    completed: Counter,
    failed: Counter,
    retried: Counter,
    dead_lettered: Counter,
    released: Counter,
    lateness: Histogram,
    queue_wait: Histogram,
    run: Histogram,
}

impl TaskMetrics {
    fn register(namespace: &str, task: &str) -> Self {
        let labels = [
            ("namespace", namespace.to_string()),
            ("task", task.to_string()),
            ("queue", DEFAULT_QUEUE.to_string()),
        ];
        let counter = |name: &'static str| metrics::counter!(name, &labels);
        let histogram = |name: &'static str| metrics::histogram!(name, &labels);
        TaskMetrics {
            enqueued: counter("scheduler_jobs_enqueued_total"),
            duplicate: counter("scheduler_jobs_duplicate_total"),
            replaced: counter("scheduler_jobs_replaced_total"),
            cancelled: counter("scheduler_jobs_cancelled_total"),
            started: counter("scheduler_jobs_started_total"),
            completed: counter("scheduler_jobs_completed_total"),
            failed: counter("scheduler_jobs_failed_total"),
            retried: counter("scheduler_jobs_retried_total"),
            dead_lettered: counter("scheduler_jobs_dead_lettered_total"),
            released: counter("scheduler_jobs_released_total"),
            lateness: histogram("scheduler_job_lateness_seconds"),
            queue_wait: histogram("scheduler_job_queue_wait_seconds"),
            run: histogram("scheduler_job_run_seconds"),
        }
    }
}

/// One scheduler's metrics: its namespace, and the handles of each task
/// seen so far.
#[derive(Clone)]
pub(crate) struct Metrics {
    namespace: Arc<str>,
    tasks: Arc<Mutex<HashMap<String, Arc<TaskMetrics>>>>,
    /// What this process's worker did, per minute, until the gauge loop
    /// adds it to the backend.
    activity: Arc<ActivityRecorder>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Microseconds to seconds, as a histogram value.
fn seconds(us: i64) -> f64 {
    us as f64 / 1_000_000.0
}

impl Metrics {
    pub(crate) fn new(namespace: &str) -> Self {
        describe();
        Metrics {
            namespace: namespace.into(),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            activity: Arc::default(),
        }
    }

    fn task(&self, task: &str) -> Arc<TaskMetrics> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = tasks.get(task) {
            return Arc::clone(m);
        }
        let m = Arc::new(TaskMetrics::register(&self.namespace, task));
        tasks.insert(task.to_string(), Arc::clone(&m));
        m
    }

    /// An enqueue of a job of `task` answered `outcome`.
    pub(crate) fn enqueued(&self, task: &str, outcome: &EnqueueOutcome) {
        let m = self.task(task);
        match outcome {
            EnqueueOutcome::Enqueued { .. } => m.enqueued.increment(1),
            EnqueueOutcome::Duplicate { .. } | EnqueueOutcome::RecentlyFinished { .. } => {
                m.duplicate.increment(1)
            }
        }
    }

    /// A replace of a job of `task` answered `outcome`.
    pub(crate) fn replaced(&self, task: &str, outcome: &ReplaceOutcome) {
        let m = self.task(task);
        match outcome {
            ReplaceOutcome::Enqueued { .. } => m.enqueued.increment(1),
            // Kept the running job: nothing changed.
            ReplaceOutcome::Running { .. } => {}
            _ => m.replaced.increment(1),
        }
    }

    /// `count` jobs of `task` that had not started were cancelled.
    pub(crate) fn cancelled(&self, task: &str, count: u64) {
        self.task(task).cancelled.increment(count);
    }

    /// An attempt of `job` starts: its lateness and queue wait, by the
    /// backend's clock.
    pub(crate) fn started(&self, job: &ClaimedJob) {
        let m = self.task(&job.task);
        m.started.increment(1);
        let lateness_us = job.started_us - job.run_at_ms * 1000;
        m.lateness.record(seconds(lateness_us).max(0.0));
        self.activity.started(job.started_us, lateness_us);
        m.queue_wait
            .record(seconds(job.started_us - job.enqueued_ms * 1000).max(0.0));
    }

    /// The task's future of an attempt of `task` ran for `took`.
    pub(crate) fn ran(&self, task: &str, took: std::time::Duration) {
        self.task(task).run.record(took.as_secs_f64());
    }

    /// Outcomes recorded: `codes` is the complete script's answer per entry.
    pub(crate) fn recorded(&self, batch: &[Finished], codes: &[String]) {
        self.activity
            .ended(codes.iter().take(batch.len()).map(String::as_str));
        for (finished, code) in batch.iter().zip(codes) {
            let m = self.task(&finished.task);
            match code.as_str() {
                "completed" => m.completed.increment(1),
                "retrying" => m.retried.increment(1),
                "released" => m.released.increment(1),
                "cancelled" => m.cancelled.increment(1),
                "failed" => m.failed.increment(1),
                "dead_lettered" => {
                    m.failed.increment(1);
                    m.dead_lettered.increment(1);
                }
                // 'stale': another worker owns the job; nothing happened here.
                _ => {}
            }
        }
    }

    /// `count` records that could not be read were dead-lettered by a claim
    /// (their task is unknown: label `task=""`).
    pub(crate) fn unreadable_dead_lettered(&self, count: u64) {
        if count > 0 {
            self.task("").dead_lettered.increment(count);
        }
    }

    /// Sets the gauges of the namespace to `counts`.
    pub(crate) fn set_counts(&self, counts: &JobCounts) {
        let gauge = |state: &'static str, value: u64| {
            metrics::gauge!(
                "scheduler_jobs",
                "namespace" => self.namespace.to_string(),
                "queue" => DEFAULT_QUEUE,
                "state" => state
            )
            .set(value as f64);
        };
        gauge("deferred", counts.deferred);
        gauge("queued", counts.queued);
        gauge("running", counts.running);
        gauge("dead_lettered", counts.dead_lettered);
    }
}

/// How often a worker refreshes the gauges.
pub(crate) const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

impl Metrics {
    /// Adds the activity counted since the last call to the backend (kept
    /// to be added next time when the backend is unreachable).
    pub(crate) async fn flush_activity(&self, backend: &dyn Backend) {
        let taken = self.activity.take();
        if taken.is_empty() {
            return;
        }
        if let Err(e) = backend.add_activity(&taken).await {
            debug!(error = %e, "adding this worker's activity counts failed; kept for the next try");
            self.activity.restore(taken);
        }
    }
}

/// Every `interval` until `stop`: adds this worker's activity counts to the
/// backend and refreshes the gauges (a failed read is skipped: the gauges
/// keep their last values, and health reports Redis). Adds the last counts
/// once more when stopped.
pub(crate) async fn gauge_loop(
    backend: Arc<dyn Backend>,
    metrics: Metrics,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        metrics.flush_activity(&*backend).await;
        match backend.counts().await {
            Ok(counts) => metrics.set_counts(&counts),
            Err(e) => debug!(error = %e, "reading the job counts for the gauges failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    metrics.flush_activity(&*backend).await;
}

/// Describes every metric to the recorder (once per process).
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "scheduler_jobs_enqueued_total",
            "Jobs created by an enqueue or a replace that found no job"
        );
        describe_counter!(
            "scheduler_jobs_duplicate_total",
            "Enqueues that found a job with their id and changed nothing"
        );
        describe_counter!(
            "scheduler_jobs_replaced_total",
            "Jobs replaced in place (the new generation counts here)"
        );
        describe_counter!(
            "scheduler_jobs_cancelled_total",
            "Jobs cancelled before they started, or that ended cancelled while running"
        );
        describe_counter!(
            "scheduler_jobs_started_total",
            "Attempts claimed by a worker"
        );
        describe_counter!("scheduler_jobs_completed_total", "Attempts that completed");
        describe_counter!(
            "scheduler_jobs_failed_total",
            "Jobs that failed for good (dead-lettered or superseded by a waiting replacement)"
        );
        describe_counter!(
            "scheduler_jobs_retried_total",
            "Failed attempts planned again after their backoff"
        );
        describe_counter!(
            "scheduler_jobs_dead_lettered_total",
            "Jobs moved to the dead letters, with their reason"
        );
        describe_counter!(
            "scheduler_jobs_released_total",
            "Attempts handed back at shutdown, to run again at once elsewhere"
        );
        describe_histogram!(
            "scheduler_job_lateness_seconds",
            Unit::Seconds,
            "Recorded start (Redis clock) minus the time the attempt was due"
        );
        describe_histogram!(
            "scheduler_job_queue_wait_seconds",
            Unit::Seconds,
            "Recorded start (Redis clock) minus the enqueue, deferral included"
        );
        describe_histogram!(
            "scheduler_job_run_seconds",
            Unit::Seconds,
            "How long the task's future ran"
        );
        describe_gauge!(
            "scheduler_jobs",
            "Jobs of the namespace by state (deferred, queued, running, dead_lettered)"
        );
    });
}
