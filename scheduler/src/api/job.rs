//! Job ids, the outcomes of enqueue/replace/cancel, and job status.

use chrono::{DateTime, Utc};

use crate::api::error::Error;

/// The longest job id accepted, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 256;

/// Checks a job id before Redis is touched.
///
/// ```
/// assert!(scheduler::validate_job_id("send_test_future_notification").is_ok());
/// assert!(scheduler::validate_job_id("").is_err());
/// assert!(scheduler::validate_job_id("a{b}").is_err());
/// ```
pub fn validate_job_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_JOB_ID_BYTES {
        Some("it is longer than 256 bytes")
    } else if id.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if id.contains(['{', '}']) {
        Some("it contains `{` or `}`, which Redis Cluster reads as a hash tag")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidJobId {
            id: id.chars().take(64).collect(),
            reason,
        }),
    }
}

/// The longest request id accepted ([`JobRequest::request_id`](crate::JobRequest::request_id)), in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Checks a request id before Redis is touched: 1 to 128 bytes, no control
/// characters.
pub(crate) fn validate_request_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_REQUEST_ID_BYTES {
        Some("it is longer than 128 bytes")
    } else if id.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidRequestId {
            id: id.chars().take(64).collect(),
            reason,
        }),
    }
}

/// Where a pending job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingState {
    /// Waiting for its run time.
    Deferred,
    /// Due, waiting for a worker.
    Queued,
    /// Running on a worker.
    Running,
}

/// What [`Scheduler::enqueue`](crate::Scheduler::enqueue) did.
///
/// The generations it names identify one job of the id (see
/// [generations](crate#generations)): they come from one counter shared by
/// every id of the namespace, so a first job may get 3, and an id's next job
/// a number more than one higher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job was created.
    Enqueued {
        /// Its id: the request's, or the one generated for a request that
        /// set none (a UUID), to inspect, wait for or cancel it.
        job_id: String,
        /// Its [generation](crate#generations), to pass to
        /// [`Scheduler::cancel_generation`](crate::Scheduler::cancel_generation).
        generation: u64,
        /// When it runs.
        run_at: DateTime<Utc>,
    },
    /// A job with this id is already pending; nothing changed.
    Duplicate {
        /// The id.
        job_id: String,
        /// The task of the existing job (job ids are shared by all tasks: it
        /// may be another task than the request's).
        task: String,
        /// Where the existing job is.
        state: PendingState,
        /// The existing job's [generation](crate#generations).
        generation: u64,
        /// When the existing job runs (or was planned to run).
        run_at: DateTime<Utc>,
    },
    /// Only with [`JobRequest::unique_until_result_expires`](crate::JobRequest::unique_until_result_expires):
    /// a job with this id has finished and its outcome is still kept
    /// (`keep_result`); nothing changed.
    RecentlyFinished {
        /// The id.
        job_id: String,
        /// How the finished job ended.
        state: FinishedState,
        /// The finished job's [generation](crate#generations).
        generation: u64,
        /// When it finished.
        finished_at: DateTime<Utc>,
    },
}

impl EnqueueOutcome {
    /// Whether a new job was created (false for
    /// [`Duplicate`](EnqueueOutcome::Duplicate) and
    /// [`RecentlyFinished`](EnqueueOutcome::RecentlyFinished)).
    pub fn is_enqueued(&self) -> bool {
        matches!(self, EnqueueOutcome::Enqueued { .. })
    }

    /// The job's id: the request's, or the one generated for a request that
    /// set none.
    ///
    /// ```
    /// #[scheduler::task]
    /// async fn ping() -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://generated-id")
    ///     .register::<ping>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let outcome = s.enqueue(ping::job()).await?; // no `.id(..)`
    /// let id = outcome.job_id().to_string();
    /// assert!(matches!(s.status(&id).await?, scheduler::JobStatus::Queued { .. }));
    /// s.cancel(&id).await?;
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn job_id(&self) -> &str {
        match self {
            EnqueueOutcome::Enqueued { job_id, .. }
            | EnqueueOutcome::Duplicate { job_id, .. }
            | EnqueueOutcome::RecentlyFinished { job_id, .. } => job_id,
        }
    }
}

/// What to do when [`Scheduler::replace`](crate::Scheduler::replace) finds the job
/// running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfRunning {
    /// Abort the running job (it ends `Cancelled`) and queue the new one; the new
    /// one starts only after the old one has stopped. This is the seed's
    /// "cancel, then queue".
    #[default]
    Abort,
    /// Let the running job finish and queue the new one to run after it.
    QueueAfter,
    /// Change nothing and report [`ReplaceOutcome::Running`].
    Keep,
}

/// What [`Scheduler::replace`](crate::Scheduler::replace) did, naming every
/// generation it affected (see [generations](crate#generations): numbers from
/// one counter of the namespace, so the new job's is higher than the replaced
/// one's, though not necessarily by one).
///
/// A job "waits" behind a running one when an earlier `replace` with
/// [`IfRunning::QueueAfter`] or [`IfRunning::Abort`] queued it to start once
/// the running one has stopped. A later `replace` with either policy takes its
/// place: the waiting generation never starts, and the answer names it
/// (`replaced_waiting`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// No job with this id was pending or running: a new one was created.
    Enqueued {
        /// Its generation.
        generation: u64,
        /// When it runs.
        run_at: DateTime<Utc>,
    },
    /// A deferred or queued job was replaced in one atomic step.
    Replaced {
        /// The new generation.
        generation: u64,
        /// When the new one runs.
        run_at: DateTime<Utc>,
        /// When the replaced one would have run.
        previous_run_at: DateTime<Utc>,
        /// The generation that was replaced: it will never start.
        replaced_generation: u64,
    },
    /// The job was running ([`IfRunning::Abort`]): it was told to abort (it
    /// ends `Cancelled`), and the new one is queued to start once it has
    /// stopped.
    AbortedRunning {
        /// The new generation.
        generation: u64,
        /// When the new one runs (not before the aborted one has stopped).
        run_at: DateTime<Utc>,
        /// The generation that was told to abort.
        aborted_generation: u64,
        /// The generation of a job that already waited behind the running
        /// one: the new one took its place, and it will never start. `None`
        /// when none waited.
        replaced_waiting: Option<u64>,
    },
    /// The job was running ([`IfRunning::QueueAfter`]): it runs on, and the
    /// new one is queued to run after it.
    QueuedAfterRunning {
        /// The new generation.
        generation: u64,
        /// When the new one runs (not before the running one finishes).
        run_at: DateTime<Utc>,
        /// The running generation.
        running_generation: u64,
        /// The generation of a job that already waited behind the running
        /// one: the new one took its place, and it will never start. `None`
        /// when none waited.
        replaced_waiting: Option<u64>,
    },
    /// The job was running and [`IfRunning::Keep`] was asked: nothing changed
    /// (a job waiting behind the running one keeps waiting).
    Running {
        /// The running generation.
        generation: u64,
    },
}

/// What [`Scheduler::cancel`](crate::Scheduler::cancel) did, naming the
/// [generations](crate#generations) it affected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The deferred or queued job was removed; it will never start.
    Removed {
        /// The removed generation.
        generation: u64,
    },
    /// The job is running; its worker was told to abort it (it ends
    /// `Cancelled`).
    AbortSignalled {
        /// The running generation.
        generation: u64,
        /// The generation of a job with this id that waited to run after the
        /// running one (a [`replace`](crate::Scheduler::replace) with
        /// [`IfRunning::QueueAfter`] or [`IfRunning::Abort`]): it was removed
        /// too and will never start. `None` when no job waited.
        removed_successor: Option<u64>,
    },
    /// No job with this id (or this generation) exists.
    NotFound,
    /// The job has already finished.
    AlreadyFinished(FinishedState),
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishedState {
    /// It returned `Ok`.
    Completed,
    /// It failed for good (attempts exhausted or a permanent error).
    Failed,
    /// It was cancelled or aborted.
    Cancelled,
}

impl FinishedState {
    /// Reads a name of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(FinishedState::Completed),
            "failed" => Some(FinishedState::Failed),
            "cancelled" => Some(FinishedState::Cancelled),
            _ => None,
        }
    }

    /// Its name: `completed`, `failed` or `cancelled` (as stored in outcome
    /// records).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishedState::Completed => "completed",
            FinishedState::Failed => "failed",
            FinishedState::Cancelled => "cancelled",
        }
    }
}

/// Where a job is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for its run time.
    Deferred {
        /// When it runs.
        run_at: DateTime<Utc>,
    },
    /// Due, waiting for a worker.
    Queued {
        /// When it became due.
        run_at: DateTime<Utc>,
    },
    /// Running.
    Running {
        /// The attempt, from 1.
        attempt: u32,
        /// The worker that runs it.
        worker: String,
    },
    /// Finished with success (result kept for `keep_result`).
    Completed,
    /// Failed for good.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Unknown id, or its result has expired.
    NotFound,
}

/// What became of a job, with its result: from
/// [`Scheduler::result`](crate::Scheduler::result) (the value decoded as the
/// task's output, `T = T::Output`), the `result` helper `#[task]` generates,
/// and [`Scheduler::result_untyped`](crate::Scheduler::result_untyped) (the
/// value as JSON).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JobResult<T> {
    /// Deferred or queued: not started yet, or waiting for its next attempt
    /// after a failed one (`last_error` then says why it failed).
    Pending {
        /// When it runs.
        run_at: DateTime<Utc>,
        /// Attempts started so far.
        attempts: u32,
        /// The error of the last failed attempt, if one failed.
        last_error: Option<String>,
    },
    /// A worker runs it.
    Running {
        /// The attempt, from 1.
        attempt: u32,
    },
    /// It completed, with the value its task returned.
    Completed(T),
    /// It failed for good (after its last attempt, or with a permanent
    /// error).
    Failed {
        /// Why.
        reason: String,
    },
    /// It was cancelled (before it started, or while running).
    Cancelled {
        /// Why, when known ("cancelled before it started", a replacement...).
        reason: Option<String>,
    },
    /// No job with this id, or its outcome has expired (`keep_result`).
    Unknown,
}

impl<T> JobResult<T> {
    /// Whether the job has finished (completed, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobResult::Completed(_) | JobResult::Failed { .. } | JobResult::Cancelled { .. }
        )
    }

    /// The job's result from what [`Scheduler::info`](crate::Scheduler::info)
    /// reports, the value decoded by `decode` (given the stored JSON, `null`
    /// for a task that returned nothing).
    pub(crate) fn from_info<E>(
        info: Option<JobInfo>,
        decode: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Self, E> {
        let Some(info) = info else {
            return Ok(JobResult::Unknown);
        };
        Ok(match info.status {
            JobStatus::Deferred { run_at } | JobStatus::Queued { run_at } => JobResult::Pending {
                run_at,
                attempts: info.attempts,
                last_error: info.last_error,
            },
            JobStatus::Running { attempt, .. } => JobResult::Running { attempt },
            JobStatus::Completed => {
                JobResult::Completed(decode(info.result.as_deref().unwrap_or("null"))?)
            }
            JobStatus::Failed => JobResult::Failed {
                reason: info.last_error.unwrap_or_default(),
            },
            JobStatus::Cancelled => JobResult::Cancelled {
                reason: info.last_error,
            },
            JobStatus::NotFound => JobResult::Unknown,
        })
    }
}

/// Everything known about a job. Non-exhaustive: fields are added as the
/// scheduler learns more about its jobs (progress, lease and arguments were).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The id.
    pub job_id: String,
    /// The task's wire name.
    pub task: String,
    /// The [generation](crate#generations) of the job this id holds now: a number from one counter
    /// shared by every id of the namespace, so not 1 for a first job, and
    /// higher (not necessarily by one) for a later job of the same id.
    pub generation: u64,
    /// Where it is now.
    pub status: JobStatus,
    /// Attempts started so far (including attempts released by a worker
    /// that shut down).
    pub attempts: u32,
    /// Attempts allowed: the job's `max_attempts`, plus one for each attempt
    /// released by a worker that shut down (a release does not use up an
    /// attempt, and the next attempt still gets a new number, so that the
    /// released run's fence token is never handed out again).
    pub max_attempts: u32,
    /// When it was enqueued.
    pub enqueued_at: Option<DateTime<Utc>>,
    /// When it is (or was) planned to run.
    pub run_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// The result's JSON, for a completed job that returned a value.
    pub result: Option<String>,
    /// The last progress its attempts reported
    /// ([`JobContext::progress`](crate::JobContext::progress)); kept with
    /// the job's outcome once it has ended.
    pub progress: Option<serde_json::Value>,
    /// A running job: when its lease expires (renewed while its worker is
    /// alive; a worker that dies leaves it to expire, then the job is
    /// retried).
    pub lease_until: Option<DateTime<Utc>>,
    /// The arguments of a pending, running or dead-lettered job (a finished
    /// job's are not kept): by parameter name for a `#[task]` registered in
    /// this binary, else as stored (see
    /// [`pending_untyped`](crate::Scheduler::pending_untyped)).
    pub args: Option<serde_json::Value>,
    /// The queue of a pending, running or dead-lettered job (`None` for a
    /// finished one: its outcome does not keep it).
    pub queue: Option<String>,
    /// Its [priority](crate::JobRequest::priority) in its queue (0 when none
    /// was set, and for a finished job).
    pub priority: i8,
    /// Its [limit key](crate::JobRequest::limit_key), if it has one.
    pub limit_key: Option<String>,
    /// A due job that waits for something else than a free worker: a
    /// concurrency slot, or a worker that runs its task.
    pub waiting: Option<Waiting>,
}

/// What a due job waits for, besides a free worker ([`JobInfo::waiting`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// Its task's concurrency limit is reached (`key: None`), or its key's
    /// (`key: Some`): it starts when a slot frees, its lateness growing
    /// meanwhile. It uses no attempt while it waits.
    Slot {
        /// The limit key whose slots are taken; `None` for the task's own limit.
        key: Option<String>,
    },
    /// Its task's rate (`key: None`) or its key's rate (`key: Some`) allows
    /// no more starts yet: it starts at the instant the budget allows, its
    /// lateness growing meanwhile. It uses no attempt while it waits.
    Rate {
        /// The limit key whose rate is spent; `None` for the task's own rate.
        key: Option<String>,
    },
    /// A worker that serves its queue claimed it but cannot run its task
    /// (not registered in that process: a rolling deploy, a task moved to
    /// another binary). It waits, using no attempt, until a worker that
    /// serves both claims.
    Worker,
}

impl std::fmt::Display for Waiting {
    /// What it waits for, as a listing shows it: "a slot of key user:42".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::Slot { key: None } => f.write_str("a slot of its task"),
            Waiting::Slot { key: Some(key) } => write!(f, "a slot of key {key}"),
            Waiting::Rate { key: None } => f.write_str("its task's rate"),
            Waiting::Rate { key: Some(key) } => write!(f, "the rate of key {key}"),
            Waiting::Worker => f.write_str("a worker that runs its task"),
        }
    }
}

impl Waiting {
    /// From the park a job waits in (common.lua's park key names).
    /// (`gs`, `gk`, `gr`, `grk`: the same on a shard of a sharded namespace.)
    pub(crate) fn from_park(park: &str, limit_key: Option<&str>) -> Option<Waiting> {
        if park.contains(":park:t:") || park.contains(":park:gs:") {
            Some(Waiting::Slot { key: None })
        } else if park.contains(":park:k:") || park.contains(":park:gk:") {
            Some(Waiting::Slot {
                key: limit_key.map(str::to_string),
            })
        } else if park.contains(":park:r:") || park.contains(":park:gr:") {
            Some(Waiting::Rate { key: None })
        } else if park.contains(":park:rk:") || park.contains(":park:grk:") {
            Some(Waiting::Rate {
                key: limit_key.map(str::to_string),
            })
        } else if park.contains(":park:u:") {
            Some(Waiting::Worker)
        } else {
            None
        }
    }
}

/// A job waiting to run, as listed by [`Scheduler::pending`](crate::Scheduler::pending)
/// (arguments typed as the task's, `A` = `T::Args`) and
/// [`Scheduler::pending_untyped`](crate::Scheduler::pending_untyped) (arguments
/// as JSON, `A` = [`serde_json::Value`]).
///
/// A pending job is deferred (its run time is in the future), queued (due,
/// waiting for a worker), or waiting behind a running job with the same id
/// (queued by [`Scheduler::replace`](crate::Scheduler::replace)). A running
/// job is not pending: see [`Scheduler::info`](crate::Scheduler::info).
///
/// ```
/// use chrono::{DateTime, Utc};
/// use scheduler::{PendingJob, Task};
///
/// #[scheduler::task]
/// async fn remind(user: u64, text: String) -> Result<(), String> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), scheduler::Error> {
/// let s = scheduler::Scheduler::builder("memory://pending-job")
///     .register::<remind>()
///     .producer_only()
///     .start()
///     .await?;
/// let at: DateTime<Utc> = "2099-01-01T09:00:00Z".parse().unwrap();
/// s.enqueue(remind::job(7, "stand up".into()).id("remind-7").at(at)).await?;
///
/// // Typed: the task's arguments struct, one field per parameter.
/// let jobs: Vec<PendingJob<<remind as Task>::Args>> = s.pending::<remind>().await?;
/// let job = &jobs[0];
/// assert_eq!(job.job_id, "remind-7");
/// assert_eq!(job.task, "remind");
/// assert_eq!(job.run_at, at);
/// assert_eq!(job.attempts, 0);
/// assert_eq!((job.args.user, job.args.text.as_str()), (7, "stand up"));
///
/// // Untyped: the arguments as JSON, by parameter name.
/// let jobs = s.pending_untyped().await?;
/// assert_eq!(jobs[0].args, serde_json::json!({"user": 7, "text": "stand up"}));
/// # s.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingJob<A> {
    /// The job id it was enqueued under.
    pub job_id: String,
    /// The wire name of its task (the function's name, or
    /// `#[task(name = "...")]`).
    pub task: String,
    /// Its [generation](crate#generations): the number this job got when it was created, which
    /// [`Scheduler::cancel_generation`](crate::Scheduler::cancel_generation)
    /// takes to cancel exactly this job. Generations come from one counter
    /// shared by every job id of the namespace, so they grow but are not
    /// consecutive for one id, and a first job need not get 1.
    pub generation: u64,
    /// When it runs: its planned run time, to the millisecond (rounded down;
    /// on Redis the job starts at the instant asked for, or the delay after
    /// the call by Redis time, to the microsecond, and never before it; the
    /// memory backend keeps whole milliseconds and rounds up) and compared
    /// with Redis server time; for a job
    /// waiting for a retry, when the retry is due. A job with a past run time
    /// is queued and starts as soon as a worker is free.
    pub run_at: DateTime<Utc>,
    /// Attempts already started: 0 for a job that has not run yet, more for
    /// one waiting for a retry.
    pub attempts: u32,
    /// The arguments: [`T::Args`](crate::Task::Args) (a struct with one
    /// public field per task parameter, named like it) from
    /// [`Scheduler::pending`](crate::Scheduler::pending), JSON from
    /// [`Scheduler::pending_untyped`](crate::Scheduler::pending_untyped).
    pub args: A,
}

/// A dead-lettered job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The id.
    pub job_id: String,
    /// The task name, if readable.
    pub task: Option<String>,
    /// The [generation](crate#generations) of the dead-lettered job, if readable.
    pub generation: Option<u64>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When.
    pub failed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        assert!(validate_job_id("a").is_ok());
        assert!(validate_job_id(&"x".repeat(256)).is_ok());
        assert!(validate_job_id(&"x".repeat(257)).is_err());
        assert!(validate_job_id("a\nb").is_err());
        assert!(validate_job_id("a\u{7f}b").is_err());
        assert!(validate_job_id("{tag}").is_err());
        assert!(validate_job_id("héllo wörld").is_ok());
    }
}

/// How many jobs of a namespace are in each state, from
/// [`Scheduler::counts`](crate::Scheduler::counts).
///
/// Read from the sizes of the namespace's own indexes in one script call
/// (no scan: `ZCOUNT`/`HLEN`/`ZCARD`, each O(1) or O(log n)), at one
/// instant of the backend's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Pending, due in the future.
    pub deferred: u64,
    /// Pending and due: waiting for a free worker slot (or for the previous
    /// run of their id to end).
    pub queued: u64,
    /// Claimed by a worker, running or with their outcome on its way.
    pub running: u64,
    /// In the dead letters (at most the namespace's dead-letter cap).
    pub dead_lettered: u64,
}
