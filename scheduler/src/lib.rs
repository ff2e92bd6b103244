//! Deferred, typed, cancellable tasks on Redis.
//!
//! Define a task with [`#[task]`](task), start a [`Scheduler`] inside your tokio
//! runtime, and defer jobs under a job id: "run `send_notification` at 9:00
//! tomorrow as `reminder-42`". Change your mind safely: [`Scheduler::cancel`]
//! guarantees a deferred job never starts, [`Scheduler::replace`] re-plans it in
//! one atomic step, and every enqueue of an id gets a new generation so a stale
//! cancel or a zombie worker can never touch a newer job.
//!
//! Guarantees: at-least-once execution with leases renewed by a heartbeat,
//! dedup by job id while a job is pending, run times compared against Redis
//! server time, every state change one Lua script.
//!
//! # Generations
//!
//! Every job gets a generation when it is created: by an enqueue, a
//! [`replace`](Scheduler::replace), or a
//! [`requeue_dead_letter`](Scheduler::requeue_dead_letter). Retries keep it.
//! The number comes from one counter shared by all job ids of the namespace,
//! which only grows. So the first job of an id need not get 1 (it gets 3 when
//! two jobs of other ids came first), and one id's jobs get increasing
//! numbers with gaps (3, then 17). What a generation tells is "this job, not
//! an earlier or later one with the same id":
//! [`cancel_generation`](Scheduler::cancel_generation) takes it, and the
//! outcomes of enqueue, replace and cancel, [`JobInfo`], [`PendingJob`],
//! [`DeadLetter`] and [`JobContext::generation`] report it.
//!
//! ```
//! use scheduler::{CancelOutcome, EnqueueOutcome};
//!
//! #[scheduler::task]
//! async fn remind(user: u64) -> Result<(), String> {
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), scheduler::Error> {
//! let s = scheduler::Scheduler::builder("memory://generations")
//!     .register::<remind>()
//!     .producer_only()
//!     .start()
//!     .await?;
//! let generation = |outcome: EnqueueOutcome| match outcome {
//!     EnqueueOutcome::Enqueued { generation, .. } => generation,
//!     other => panic!("{other:?}"),
//! };
//! let later = std::time::Duration::from_secs(3600);
//! let a = generation(s.enqueue(remind::job(1).id("remind-1").after(later)).await?);
//! let b = generation(s.enqueue(remind::job(2).id("remind-2").after(later)).await?);
//! assert!(b > a);
//! // The id's next job gets the next number of the shared counter: one that
//! // no earlier job of this id (or any other) had.
//! s.cancel("remind-1").await?;
//! let a2 = generation(s.enqueue(remind::job(1).id("remind-1").after(later)).await?);
//! assert!(a2 > b);
//! // A cancel for the old job leaves the new one alone.
//! assert!(!matches!(
//!     s.cancel_generation("remind-1", a).await?,
//!     CancelOutcome::Removed { .. } | CancelOutcome::AbortSignalled { .. }
//! ));
//! assert!(s.info("remind-1").await?.is_some_and(|job| job.generation == a2));
//! # s.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! The counter is shared, not per id, on purpose: a job's record is deleted
//! once its result is no longer kept, and a per-id counter would then start
//! again at 1, so that a late cancel meant for the old job could cancel a new
//! one that got the same number.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod backend;
mod clock;
#[cfg(feature = "dashboard")]
pub mod dashboard;
mod ops;
mod payload;
mod periodic;
pub mod testing;
mod worker;

pub use crate::api::activity::{ActivityMinute, LATENESS_BOUNDS_MS, LATENESS_BUCKETS};
pub use crate::api::config::{Durability, SchedulerConfig, WorkerConfig};
pub use crate::api::connection::RedisConnection;
pub use crate::api::deps::{Dep, Dependencies, DependencyKey};
pub use crate::api::error::{Error, RedisError};
pub use crate::api::events::{EventsMissed, JobEvent, JobEventKind};
pub use crate::api::job::{
    validate_job_id, CancelOutcome, DeadLetter, EnqueueOutcome, FinishedState, IfRunning,
    JobCounts, JobInfo, JobResult, JobStatus, PendingJob, PendingState, ReplaceOutcome, Waiting,
    MAX_JOB_ID_BYTES, MAX_REQUEST_ID_BYTES,
};
pub use crate::api::listing::{JobPage, JobQuery, ListState, MAX_PAGE};
pub use crate::api::registry::{Location, Registry, RunFn, TaskFuture, TaskRegistration};
pub use crate::api::routing::{
    queue_name_problem, QueueInfo, Queues, Rate, DEFAULT_QUEUE, MAX_LIMIT_KEY, MAX_QUEUE_NAME,
};
pub use crate::api::scheduler::{
    JobEvents, Rescheduled, Scheduler, SchedulerBuilder, ACTIVITY_MINUTES,
};
pub use crate::api::task::{JobRequest, Task, TaskOptions, When};
pub use crate::api::task_result::{IntoTaskResult, TaskError};
pub use crate::ops::health::Health;
pub use crate::periodic::{MissedTicks, Schedule, ScheduleInfo, ScheduleSource, ScheduleSpec};
pub use crate::worker::context::{JobContext, MAX_PROGRESS_BYTES};
pub use scheduler_macros::task;

/// Re-exported so users need no direct dependency for the types in signatures.
pub use chrono;

/// Re-exported for [`Schedule::tz`]: time zones by name, such as
/// `scheduler::chrono_tz::Europe::Paris`.
pub use chrono_tz;

/// Not public API. Used by code that `#[task]` generates.
#[doc(hidden)]
pub mod __private {
    pub use ::inventory;
    pub use ::serde;
    pub use ::serde_json;
    pub use ::std::boxed::Box;
    pub use ::std::result::Result;
    pub use ::std::vec::Vec;

    use crate::{Error, IntoTaskResult, JobContext, TaskError};

    /// Not public API. Decodes a job's arguments: an array by position, or an
    /// object by name (written by earlier versions). An array of the wrong
    /// length is reported as such, with the parameters' names.
    pub fn decode_args<A: ::serde::de::DeserializeOwned>(
        task: &'static str,
        params: &'static [&'static str],
        payload: &[u8],
    ) -> Result<A, Error> {
        crate::payload::positional::decode(task, Some(params), payload)
    }

    /// Not public API. Resolves a `Dep<T>` parameter.
    pub fn dependency<T: ?Sized + Send + Sync + 'static>(
        ctx: &JobContext,
    ) -> Result<crate::Dep<T>, Error> {
        ctx.dependency::<T>()
    }

    /// Not public API. Records one attempt's outcome as a worker does
    /// (`outcome`: "ok", "retry", "fail", "cancelled" or "release"), answering
    /// the backend's code ("stale" when the attempt is no longer the running
    /// one). Tests deliver an old outcome again with it to check fencing.
    pub async fn record_outcome(
        scheduler: &crate::Scheduler,
        job_id: &str,
        generation: u64,
        attempt: u32,
        outcome: &'static str,
    ) -> Result<String, Error> {
        let finished = [crate::backend::Finished {
            id: job_id.to_string(),
            task: String::new(),
            generation,
            attempt,
            outcome,
            text: String::new(),
            retry_delay_ms: 0,
        }];
        let codes = scheduler.backend().complete(&finished).await?;
        codes
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("empty complete reply".into()))
    }

    /// Not public API. A planning step computed and held back, as a planner
    /// that read a schedule and was then delayed holds it.
    #[derive(Debug)]
    pub struct PlanningStep(crate::periodic::store::PlanCall);

    impl PlanningStep {
        /// The tick instants (unix ms) the step would create jobs for.
        pub fn ticks(&self) -> Vec<i64> {
            self.0.ticks.iter().map(|(tick, _)| *tick).collect()
        }
    }

    /// Not public API. Reads schedule `name` and computes its planning step
    /// as a planner does, without sending it; `None` when its next tick is
    /// not due yet. Tests send it late with [`send_planning_step`].
    pub async fn planning_step(
        scheduler: &crate::Scheduler,
        name: &str,
    ) -> Result<Option<PlanningStep>, Error> {
        let (now_ms, stored) = scheduler.backend().list_schedules().await?;
        let stored = stored
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::ScheduleNotFound(name.to_string()))?;
        let schedule = crate::Schedule::from_spec(&stored.definition.spec)?;
        Ok(crate::periodic::planner::step(&stored, &schedule, now_ms).map(PlanningStep))
    }

    /// Not public API. Sends a planning step to the backend; its answer, as
    /// `Debug` text (`Planned { created: 1, cancelled: 0 }`, `CursorMoved`, ...).
    pub async fn send_planning_step(
        scheduler: &crate::Scheduler,
        step: &PlanningStep,
    ) -> Result<String, Error> {
        let outcome = scheduler.backend().plan_schedule(&step.0).await?;
        Ok(format!("{outcome:?}"))
    }

    /// Not public API. Converts a task's return value.
    pub fn into_task_result<R: IntoTaskResult>(value: R) -> Result<Option<String>, TaskError> {
        value.into_task_result()
    }
}

/// The README's examples, compiled and run as doctests so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
