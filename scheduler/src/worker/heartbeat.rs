//! Keeping leases: the heartbeat that renews them, and the watchdog that drops
//! a job whose lease could not be confirmed in time.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::warn;

use crate::worker::executor::StopReason;
use crate::worker::{Worker, WATCHDOG_MAX_SLEEP};
use crate::Error;

impl Worker {
    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
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
    pub(super) async fn renew(&self, snapshot: &[(String, u64, u32)]) -> Result<(), Error> {
        let sent = Instant::now();
        let codes = self
            .backend
            .renew(&self.id, self.config.lease, snapshot)
            .await?;
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
    pub(super) async fn watchdog(self: Arc<Self>) {
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
