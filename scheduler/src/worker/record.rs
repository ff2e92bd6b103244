//! Recording how attempts ended, in batches, until each outcome is written
//! or given up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::backend::Finished;
use crate::worker::{Worker, COMPLETE_BATCH};
use crate::Error;

impl Worker {
    pub(super) async fn complete_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
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
                                self.give_up(f, &e).await;
                            }
                        }
                    }
                }
                Err(e) => self.give_up(&batch[0], &e).await,
            }
            batch.clear();
        }
    }

    /// Records outcomes, retrying transient failures until the worker stops;
    /// the jobs are forgotten once recorded (or when the worker stops).
    /// Returns the error Redis refused the batch with (not transient), or the
    /// last transient one when the worker stopped first.
    pub(super) async fn record(&self, batch: &[Finished]) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.backend.complete(batch).await {
                Ok(codes) => {
                    self.health.ok();
                    self.executor.metrics.recorded(batch, &codes);
                    for (f, code) in batch.iter().zip(codes.iter()) {
                        if code == "stale" && f.outcome == "abandon" {
                            // Its lease was taken over already: nothing to give up.
                        } else if code == "stale" {
                            warn!(job_id = %f.id, generation = f.generation, attempt = f.attempt, "outcome rejected: the job is no longer ours (lease taken over, cancelled or replaced)");
                        } else if code == "dead_lettered" {
                            warn!(job_id = %f.id, generation = f.generation, reason = %f.text, "job failed for good (dead-lettered)");
                        } else if code == "failed" {
                            info!(job_id = %f.id, generation = f.generation, reason = %f.text, "job failed; the replacement that waited behind it runs instead of a retry");
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
    /// and the job given up to its lease (it runs again elsewhere). Said once
    /// to the backend ('abandon'): in Redis the lease is this worker's, which
    /// its renewals for other jobs would otherwise keep.
    pub(super) async fn give_up(&self, f: &Finished, e: &Error) {
        let reason = format!(
            "the outcome `{}` of job {} (generation {}, attempt {}) could not be recorded: {e}; the job runs again after its lease",
            f.outcome, f.id, f.generation, f.attempt
        );
        error!(job_id = %f.id, error = %e, "{reason}");
        self.health.alert(&reason);
        self.forget(&f.id, f.generation, f.attempt);
        if f.outcome != "abandon" {
            let abandon = Finished {
                outcome: "abandon",
                text: String::new(),
                retry_delay_ms: 0,
                ..f.clone()
            };
            if let Err(e) = self.backend.complete(std::slice::from_ref(&abandon)).await {
                error!(job_id = %f.id, error = %e, "the job could not be given up either; it runs again once this worker's lease runs out");
            }
        }
    }
}
