//! Claiming due jobs and running each in its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, warn};

use crate::backend::{ClaimTicket, ClaimedJob};
use crate::worker::executor::{StopHandle, StopReason};
use crate::worker::{Worker, CLAIM_BATCH};

impl Worker {
    pub(super) async fn claim_loop(self: Arc<Self>) {
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
            let serving = self.serving.next_claim();
            let claim = self
                .backend
                .claim(
                    &self.id,
                    free.min(CLAIM_BATCH),
                    self.config.lease,
                    &ticket,
                    &serving,
                )
                .await;
            let wake_at = match claim {
                Ok(claim) => {
                    self.health.ok();
                    backoff = Duration::from_millis(50);
                    for (id, reason) in &claim.rejected {
                        warn!(job_id = %id, reason = %reason, "unreadable job dead-lettered");
                    }
                    self.executor
                        .metrics
                        .unreadable_dead_lettered(claim.rejected.len() as u64);
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
                    // The script ran about half a round trip after `sent`.
                    let ran_at = sent + sent.elapsed() / 2;
                    let until_next = claim
                        .next_wake_us
                        .map(|t| until_due(t, claim.now_us))
                        .unwrap_or(self.config.max_idle);
                    ran_at + until_next.min(self.config.max_idle)
                }
                Err(e) => {
                    self.health.degraded(&e.to_string());
                    warn!(error = %e, "claiming failed; retrying");
                    // The claim may have run with its reply lost: ask for its jobs.
                    ticket.retry = true;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    Instant::now() + backoff
                }
            };
            tokio::select! {
                _ = sleep_until_precise(wake_at) => {}
                _ = self.wake.notified() => {}
                _ = self.job_ended.notified() => {}
                _ = self.stop_claiming.cancelled() => {}
            }
        }
    }

    /// Registers and starts claimed jobs; once the worker is closing they are
    /// released at once instead (a claim that was in flight when `close()`
    /// began).
    pub(super) fn take(self: &Arc<Self>, jobs: Vec<ClaimedJob>, sent: Instant) {
        let closing = self.stop_claiming.is_cancelled();
        for job in jobs {
            self.planner.job_started(&job.id);
            let stop = self.register(&job, sent);
            if closing {
                stop.stop(StopReason::Shutdown);
            }
            self.spawn_job(job, stop);
        }
    }

    /// Closing after a claim failed: its reply may have been lost with jobs
    /// taken. Ask once for them, and release them.
    pub(super) async fn recover_lost_claim(self: &Arc<Self>, ticket: &ClaimTicket) {
        let sent = Instant::now();
        match self
            .backend
            .claim(
                &self.id,
                CLAIM_BATCH,
                self.config.lease,
                ticket,
                &self.serving.next_claim(),
            )
            .await
        {
            Ok(claim) => self.take(claim.jobs, sent),
            Err(e) => {
                warn!(error = %e, "closing: a claim whose reply was lost could not be asked again; its jobs run after their lease")
            }
        }
    }

    pub(super) fn spawn_job(self: &Arc<Self>, job: ClaimedJob, stop: StopHandle) {
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

    pub(super) async fn run_job(self: &Arc<Self>, job: ClaimedJob, stop: StopHandle) {
        let finished = self.executor.run(&job, stop).await;
        if finished.outcome == "abandon" {
            // Given up: renewed no more. The backend is told, so that the
            // renewals of this worker's other jobs do not keep its lease
            // (the worker's lease covers them all in Redis).
            self.forget(&job.id, job.generation, job.attempt);
        } else if let Ok(mut jobs) = self.jobs.lock() {
            // Keep renewing the lease until the outcome is recorded.
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
}

/// How long after the claim ran (backend time `now_us`) what is due at
/// `due_us` is due; 1 ms when it already was (a job that was due but not
/// taken, such as one waiting for its previous run).
pub(super) fn until_due(due_us: i64, now_us: i64) -> Duration {
    if due_us <= now_us {
        return Duration::from_millis(1);
    }
    Duration::from_micros((due_us - now_us) as u64)
}

/// The part of a wait slept on a blocking thread rather than tokio's timer.
const FINE_SLEEP: Duration = Duration::from_millis(1);

/// Sleeps until `deadline` to within a fraction of a millisecond. Tokio's
/// timer counts whole milliseconds and rounds a deadline up to the next one,
/// so a job due 0.3 ms from now would be claimed up to 1.3 ms later, and
/// every due job about half a millisecond late on average. The last
/// millisecond is slept on tokio's blocking pool (`nanosleep`, with tens of
/// microseconds of slack) instead.
pub(super) async fn sleep_until_precise(deadline: Instant) {
    let coarse_until = deadline.checked_sub(FINE_SLEEP).unwrap_or(deadline);
    if Instant::now() < coarse_until {
        tokio::time::sleep_until(coarse_until).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    // If the pool cannot run it (runtime shutting down), tokio's timer does.
    if tokio::task::spawn_blocking(move || std::thread::sleep(left))
        .await
        .is_err()
    {
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_due_counts_microseconds() {
        // Claim ran at 1000.250 ms; the job is due at 1003 ms, another at
        // 1000.400 ms.
        assert_eq!(
            until_due(1_003_000, 1_000_250),
            Duration::from_micros(2_750)
        );
        assert_eq!(until_due(1_000_400, 1_000_250), Duration::from_micros(150));
        // Due when the claim ran, or before: try again in 1 ms (it was due
        // and not taken), never at once in a loop.
        assert_eq!(until_due(1_000_250, 1_000_250), Duration::from_millis(1));
        assert_eq!(until_due(990_000, 1_000_000), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn a_precise_sleep_never_ends_before_its_deadline() {
        for micros in [0, 150, 900, 1_000, 1_300, 2_500] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            sleep_until_precise(deadline).await;
            assert!(Instant::now() >= deadline, "woke early for {micros} µs");
        }
    }
}
