//! Cancelling jobs: by id, checked against a task, fenced by generation, and
//! waiting until a running job has stopped.

use std::time::Duration;

use tracing::info;

use crate::{validate_job_id, CancelOutcome, Error, JobStatus, Scheduler, Task};

impl Scheduler {
    /// Cancels a job: a deferred or queued one is removed and never starts; a
    /// running one is told to abort (its future is dropped) and ends `Cancelled`,
    /// and a replacement waiting to run after it is removed too
    /// ([`CancelOutcome::AbortSignalled`] names both generations).
    /// Returns at once; see [`cancel_and_wait`](Self::cancel_and_wait).
    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        let outcome = self.cancel_call(job_id, None, None).await?;
        info!(job_id, ?outcome, "cancel");
        Ok(outcome)
    }

    /// Cancels job `job_id` as [`cancel`](Self::cancel) does, only if it is a
    /// job of task `T` (what `#[task]`'s `cancel` helper calls). When the id
    /// is held by a job of another task (pending, running, or finished with
    /// its outcome kept), nothing changes and the answer is [`Error::WrongTask`].
    pub async fn cancel_typed<T: Task>(&self, job_id: &str) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        let outcome = self.cancel_call(job_id, None, Some(T::NAME)).await?;
        info!(job_id, task = T::NAME, ?outcome, "cancel");
        Ok(outcome)
    }

    /// Cancels only the given generation of a job: a stale cancel never touches
    /// a later job that reuses the id. Pass the generation an enqueue or
    /// replace answered, or one from [`info`](Self::info) or
    /// [`pending`](Self::pending). Generations come from one counter of the
    /// namespace (see [generations](crate#generations)), never reused, even
    /// after the old job's record has expired. A generation that matches
    /// neither the id's pending or running job nor its kept outcome answers
    /// [`CancelOutcome::NotFound`] and changes nothing.
    pub async fn cancel_generation(
        &self,
        job_id: &str,
        generation: u64,
    ) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        self.cancel_call(job_id, Some(generation), None).await
    }

    /// The backend's cancel; a pending job it removed counts as cancelled.
    async fn cancel_call(
        &self,
        job_id: &str,
        generation: Option<u64>,
        task: Option<&str>,
    ) -> Result<CancelOutcome, Error> {
        let (outcome, removed_task) =
            self.observe(self.inner.backend.cancel(job_id, generation, task).await)?;
        if let Some(task) = removed_task {
            self.metrics().cancelled(&task, 1);
        }
        Ok(outcome)
    }

    /// Cancels, then waits until a running job has stopped (up to `timeout`).
    pub async fn cancel_and_wait(
        &self,
        job_id: &str,
        timeout: Duration,
    ) -> Result<CancelOutcome, Error> {
        let outcome = self.cancel(job_id).await?;
        if matches!(outcome, CancelOutcome::AbortSignalled { .. }) {
            let deadline = tokio::time::Instant::now() + timeout;
            while matches!(self.status(job_id).await?, JobStatus::Running { .. }) {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        timeout,
                        message: format!("job {job_id:?} did not stop"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(outcome)
    }
}
