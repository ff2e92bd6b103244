//! Moving a deferred or queued job to another time, without its arguments.

use chrono::{DateTime, Utc};

use super::enqueue::when_arg;
use crate::api::job::validate_job_id;
use crate::clock::time_from_ms;
use crate::{Error, Scheduler, When};

/// What [`Scheduler::reschedule`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rescheduled {
    /// The job now runs at `run_at`; it is the same job (same generation,
    /// arguments and attempts).
    Moved {
        /// Its [generation](crate#generations).
        generation: u64,
        /// When it runs now (for a job waiting for a running job of its id:
        /// its own run time, once that job has ended).
        run_at: DateTime<Utc>,
    },
    /// The job is running: it was not moved.
    Running {
        /// The running job's generation.
        generation: u64,
    },
    /// No deferred or queued job has this id.
    NotFound,
}

impl Scheduler {
    /// Moves the deferred or queued job `job_id` to another time, keeping
    /// it (same generation, arguments and attempts); for the operator, who
    /// may not have the task's arguments at hand. To change the arguments
    /// too, [`replace`](Self::replace) it. Atomic, and a call sent twice
    /// moves it to the same time (`When::At`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::{JobStatus, Rescheduled, When};
    ///
    /// #[scheduler::task]
    /// async fn remind(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://reschedule-doc")
    ///     .register::<remind>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// remind::defer_by(&s, "r-1", Duration::from_secs(60), 1).await?;
    /// let at = "2099-01-01T09:00:00Z".parse().unwrap();
    /// let moved = s.reschedule("r-1", When::At(at)).await?;
    /// assert!(matches!(moved, Rescheduled::Moved { run_at, .. } if run_at == at));
    /// assert_eq!(s.status("r-1").await?, JobStatus::Deferred { run_at: at });
    /// assert_eq!(s.reschedule("nobody", When::Now).await?, Rescheduled::NotFound);
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reschedule(&self, job_id: &str, when: When) -> Result<Rescheduled, Error> {
        self.reschedule_call(job_id, None, when).await
    }

    /// Moves job `job_id` as [`reschedule`](Self::reschedule) does, only if
    /// it is still the given [generation](crate#generations) (one that
    /// [`info`](Self::info) or a listing showed): a job that replaced it
    /// since is left alone, and the answer is [`Rescheduled::NotFound`].
    pub async fn reschedule_generation(
        &self,
        job_id: &str,
        generation: u64,
        when: When,
    ) -> Result<Rescheduled, Error> {
        self.reschedule_call(job_id, Some(generation), when).await
    }

    async fn reschedule_call(
        &self,
        job_id: &str,
        only: Option<u64>,
        when: When,
    ) -> Result<Rescheduled, Error> {
        validate_job_id(job_id)?;
        let when = when_arg(when)?;
        let (code, generation, run_at) =
            self.observe(self.inner.backend.reschedule(job_id, only, when).await)?;
        match code.as_str() {
            "moved" => Ok(Rescheduled::Moved {
                generation,
                run_at: time_from_ms(run_at),
            }),
            "running" => Ok(Rescheduled::Running { generation }),
            "not_found" => Ok(Rescheduled::NotFound),
            "corrupt" => Err(Error::Corrupt(format!(
                "the record of job {job_id:?} is not readable (the next claim dead-letters it)"
            ))),
            other => Err(Error::Corrupt(format!(
                "unexpected reschedule reply {other:?}"
            ))),
        }
    }
}
