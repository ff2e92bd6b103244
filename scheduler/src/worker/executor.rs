//! Runs one claimed job: finds its task, builds its context, enforces the
//! timeout, catches panics, and turns the result into the outcome to record.
//! Shared by the background worker and the testing harness.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::api::config::WorkerConfig;
use crate::api::deps::Dependencies;
use crate::api::registry::Registry;
use crate::api::task_result::TaskError;
use crate::backend::{ClaimedJob, Finished};
use crate::clock::Clock;
use crate::ops::metrics::Metrics;
use crate::worker::context::ContextBackend;
use crate::worker::context::JobContext;

/// Why a running job's future was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Cancelled or aborted by a user: ends `Cancelled`.
    Cancelled,
    /// Another worker owns the job now: record nothing.
    LeaseLost,
    /// The worker is closing: release the job to others.
    Shutdown,
}

/// How to stop a running job.
#[derive(Clone, Debug)]
pub(crate) struct StopHandle {
    pub(crate) token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
    /// Until when the job's lease is known to be ours (none: no lease, as in
    /// the testing harness). The job's future is never polled after it.
    valid_until: Arc<Mutex<Option<Instant>>>,
}

impl StopHandle {
    /// A handle for a job that has not started.
    pub(crate) fn new() -> Self {
        StopHandle {
            token: CancellationToken::new(),
            reason: Arc::new(Mutex::new(None)),
            valid_until: Arc::new(Mutex::new(None)),
        }
    }

    /// The lease is known to be ours until `until` (never moves back).
    pub(crate) fn extend_validity(&self, until: Instant) {
        if let Ok(mut v) = self.valid_until.lock() {
            *v = Some(v.map_or(until, |t| t.max(until)));
        }
    }

    /// Whether the lease's validity ran out: the job must not run on.
    fn lease_expired(&self) -> bool {
        self.valid_until
            .lock()
            .ok()
            .and_then(|v| *v)
            .is_some_and(|t| t <= Instant::now())
    }

    /// Whether the job was stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Stops the job; the first reason given wins.
    pub(crate) fn stop(&self, reason: StopReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.token.cancel();
    }

    fn reason(&self) -> StopReason {
        self.reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or(StopReason::Cancelled)
    }
}

/// What running a job needs.
#[derive(Clone, Debug)]
pub(crate) struct Executor {
    pub(crate) registry: Registry,
    pub(crate) deps: Dependencies,
    pub(crate) config: WorkerConfig,
    pub(crate) default_timeout: Duration,
    pub(crate) worker_id: String,
    pub(crate) clock: Arc<dyn Clock>,
    /// Largest result (its JSON) stored; a larger one fails the attempt for good.
    pub(crate) max_result_bytes: usize,
    pub(crate) metrics: Metrics,
    /// Where a job's progress reports go.
    pub(crate) backend: ContextBackend,
}

impl Executor {
    /// Runs `job` to its outcome: 'abandon' when the lease was lost
    /// meanwhile (the backend then lets the job expire with its lease).
    /// `stop` stops it from outside; a job stopped before it starts never runs.
    pub(crate) async fn run(&self, job: &ClaimedJob, stop: StopHandle) -> Finished {
        self.metrics.started(job);
        let lateness_ms = self.clock.now_ms() - job.run_at_ms;
        let span = info_span!(
            "job",
            task = %job.task,
            job_id = %job.id,
            generation = job.generation,
            attempt = job.attempt,
            lateness_ms,
            duration_ms = tracing::field::Empty,
        );
        let finished = |outcome: &'static str, text: String, retry_delay_ms: u64| Finished {
            id: job.id.clone(),
            task: job.task.clone(),
            generation: job.generation,
            attempt: job.attempt,
            outcome,
            text,
            retry_delay_ms,
        };
        let Some(registration) = self.registry.get(&job.task) else {
            // A rolling deploy: a newer worker may know this task. Retry first.
            warn!(parent: &span, "unknown task (not registered in this worker); will retry");
            let delay = self.config.retry_delay(job.attempt);
            return finished(
                "retry",
                format!(
                    "unknown task `{}` (not registered in worker {})",
                    job.task, self.worker_id
                ),
                delay.as_millis() as u64,
            );
        };
        crate::ops::trace::set_parent(&span, job.trace.as_deref());
        let mut ctx = JobContext::new(
            job.id.clone(),
            registration.name,
            job.generation,
            job.attempt,
            job.max_attempts,
            crate::clock::time_from_ms(job.run_at_ms),
            crate::clock::time_from_ms(job.enqueued_ms),
            // A tick of a periodic schedule names its instant in its id.
            crate::periodic::store::planned_tick(&job.id),
            self.deps.clone(),
        );
        ctx.cancel = stop.token.clone();
        ctx.backend = Some(self.backend.clone());
        if stop.is_stopped() {
            // Stopped between claim and start (an abort that came early, a
            // shutdown while the claim was in flight): it never starts.
            return match stop.reason() {
                StopReason::Cancelled => {
                    info!(parent: &span, "job aborted before it started");
                    finished("cancelled", String::new(), 0)
                }
                StopReason::Shutdown => finished("release", String::new(), 0),
                StopReason::LeaseLost => finished("abandon", String::new(), 0),
            };
        }
        let started = std::time::Instant::now();
        let future = match (registration.run)(ctx.clone(), &job.payload) {
            Ok(f) => f,
            Err(e) => {
                warn!(parent: &span, error = %e, "job cannot start; dead-lettering");
                return finished("fail", e.to_string(), 0);
            }
        };
        let timeout = registration.options.timeout.unwrap_or(self.default_timeout);
        // The task is never polled past its lease's validity, even when the
        // watchdog that drops it has not run yet (a process resumed after a
        // pause polls the woken task and the watchdog in any order): it ends
        // there, as if dropped, and records nothing.
        let guard = stop.clone();
        let mut future = future;
        let fenced = std::future::poll_fn(move |cx| {
            if guard.lease_expired() {
                guard.stop(StopReason::LeaseLost);
                return Poll::Ready(None);
            }
            future.as_mut().poll(cx).map(Some)
        });
        let mut handle = tokio::spawn(fenced.instrument(span.clone()));
        let abort = handle.abort_handle();
        let mut joined_already = false;
        let outcome: (&'static str, String, u64) = tokio::select! {
            biased;
            _ = stop.token.cancelled() => {
                abort.abort();
                match stop.reason() {
                    StopReason::Cancelled => ("cancelled", String::new(), 0),
                    StopReason::Shutdown => ("release", String::new(), 0),
                    StopReason::LeaseLost => ("abandon", String::new(), 0),
                }
            }
            joined = &mut handle => {
                joined_already = true;
                match joined {
                    Ok(None) => ("abandon", String::new(), 0),
                    Ok(Some(Ok(result))) => self.success(result.unwrap_or_default()),
                    Ok(Some(Err(e))) => self.failure(job, e),
                    Err(join) => {
                        let text = if join.is_panic() {
                            let payload = join.into_panic();
                            let msg = payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "unknown panic".into());
                            format!("task panicked: {msg}")
                        } else {
                            "task was aborted".to_string()
                        };
                        self.failure(job, TaskError::retry(text))
                    }
                }
            }
            _ = tokio::time::sleep(timeout) => {
                abort.abort();
                self.failure(job, TaskError::retry(format!("timed out after {timeout:?}")))
            }
        };
        if !joined_already {
            // Aborted: the outcome is reported only once the task's future is
            // gone, so that nothing of this run overlaps a run that the
            // outcome lets start (the next attempt, the next generation).
            let _ = handle.await;
        }
        let took = started.elapsed();
        span.record("duration_ms", took.as_secs_f64() * 1000.0);
        self.metrics.ran(&job.task, took);
        let (kind, text, delay) = outcome;
        match kind {
            "ok" => debug!(parent: &span, "job completed"),
            "cancelled" => info!(parent: &span, "job aborted"),
            "release" => info!(parent: &span, "job released at shutdown"),
            "abandon" => {
                warn!(parent: &span, "lease lost or not confirmed in time; the job is given up to its lease")
            }
            _ => warn!(parent: &span, error = %text, outcome = kind, "job failed"),
        }
        finished(kind, text, delay)
    }

    /// A successful attempt, unless its result is too large to store.
    fn success(&self, result: String) -> (&'static str, String, u64) {
        if result.len() > self.max_result_bytes {
            return (
                "fail",
                format!(
                    "the result of {} bytes exceeds the limit of {} bytes (see `SchedulerBuilder::max_payload_bytes`); it was not stored",
                    result.len(),
                    self.max_result_bytes
                ),
                0,
            );
        }
        ("ok", result, 0)
    }

    /// A failed attempt: retried after a delay, or failed for good.
    fn failure(&self, job: &ClaimedJob, error: TaskError) -> (&'static str, String, u64) {
        if error.is_permanent() {
            return ("fail", error.message().to_string(), 0);
        }
        let delay = error
            .retry_delay()
            .unwrap_or_else(|| self.config.retry_delay(job.attempt));
        (
            "retry",
            error.message().to_string(),
            delay.as_millis() as u64,
        )
    }
}
