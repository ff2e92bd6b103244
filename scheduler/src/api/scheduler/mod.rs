//! The `Scheduler` handle: enqueue, replace, cancel and inspect jobs, and the
//! worker it runs inside the application's tokio runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::api::config::{SchedulerConfig, WorkerConfig};
use crate::api::deps::Dependencies;
use crate::api::error::Error;
use crate::api::job::{
    validate_job_id, validate_request_id, CancelOutcome, DeadLetter, EnqueueOutcome, FinishedState,
    IfRunning, JobInfo, JobStatus, PendingJob, PendingState, ReplaceOutcome,
};
use crate::api::registry::{Registry, TaskRegistration};
use crate::api::task::{JobRequest, Task, When};
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::{Backend, EnqueueReply, NewJob, RawPending};
use crate::ops::health::{Health, HealthState};
use crate::payload::encode::encode_args;
use crate::payload::positional::{self, to_named, to_positional};
use crate::worker::{Worker, WorkerHandle};

/// Most jobs written by one script call of [`Scheduler::enqueue_many`].
const BULK_BATCH: usize = 250;
/// How many of those calls [`Scheduler::enqueue_many`] keeps in flight on the
/// connection: while Redis runs one batch, the next is encoded, sent and the
/// previous reply decoded, instead of each side waiting for the other.
const BULK_IN_FLIGHT: usize = 4;
/// Largest time a score can hold exactly (2^53 ms).
const MAX_MS: i64 = 1 << 53;

/// A handle to a running scheduler: cheap to clone and share (put it in your web
/// framework's state).
///
/// ```no_run
/// # async fn demo() -> Result<(), scheduler::Error> {
/// let scheduler = scheduler::Scheduler::builder("redis://127.0.0.1:6379")
///     .namespace("myapp")
///     .start()
///     .await?;
/// // ... enqueue jobs with the helpers `#[task]` generates ...
/// scheduler.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    registry: Registry,
    deps: Dependencies,
    health: HealthState,
    worker: Mutex<Option<WorkerHandle>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("namespace", &self.inner.backend.config().namespace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Scheduler`]; see [`Scheduler::builder`].
#[must_use = "call `.start().await` to connect"]
pub struct SchedulerBuilder {
    url: String,
    config: SchedulerConfig,
    worker: Option<WorkerConfig>,
    deps: Dependencies,
    explicit: Vec<&'static TaskRegistration>,
}

impl std::fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password of the URL.
        f.debug_struct("SchedulerBuilder")
            .field("url", &crate::backend::redis::redact(&self.url))
            .field("config", &self.config)
            .field("worker", &self.worker)
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

impl SchedulerBuilder {
    /// Key prefix of this scheduler's keys (default `scheduler`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// Replaces every shared setting.
    pub fn config(mut self, config: SchedulerConfig) -> Self {
        self.config = config;
        self
    }

    /// How long one Redis command may take (default 5 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// How long outcomes are kept (default 1 h; zero keeps none).
    pub fn keep_result(mut self, keep: Duration) -> Self {
        self.config.keep_result = keep;
        self
    }

    /// Most dead-letter entries kept (default 10,000).
    pub fn dead_letter_cap(mut self, cap: u32) -> Self {
        self.config.dead_letter_cap = cap;
        self
    }

    /// Largest serialized payload accepted (default 512 KiB), and the largest
    /// result stored: a task whose result is larger fails for good, with its
    /// size and the limit in the reason.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.config.max_payload_bytes = bytes;
        self
    }

    /// Makes enqueue, replace and cancel wait until `replicas` replicas have
    /// the write (`WAIT`), failing with [`Error::NotReplicated`] after `timeout`.
    /// Use with Sentinel so a failover cannot lose an acknowledged job.
    pub fn durable(mut self, replicas: u32, timeout: Duration) -> Self {
        self.config.durable = Some(crate::api::config::Durability { replicas, timeout });
        self
    }

    /// Runs a worker with these settings (a worker with default settings runs
    /// unless [`producer_only`](Self::producer_only) is called).
    pub fn worker(mut self, config: WorkerConfig) -> Self {
        self.worker = Some(config);
        self
    }

    /// Only enqueue from this process; run no worker.
    pub fn producer_only(mut self) -> Self {
        self.worker = None;
        self
    }

    /// Provides a dependency that tasks receive as `Dep<T>`. Providing the same
    /// type again replaces it (how tests install fakes).
    pub fn provide<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.deps.insert(value);
        self
    }

    /// Provides a shared (possibly unsized) dependency, e.g. `Arc<dyn Notifier>`.
    pub fn provide_arc<T: ?Sized + Send + Sync + 'static>(self, value: Arc<T>) -> Self {
        self.deps.insert_arc(value);
        self
    }

    /// Registers a task explicitly, for platforms where `inventory` does not run.
    pub fn register<T: Task>(mut self) -> Self {
        self.explicit.push(T::registration());
        self
    }

    /// Connects, checks the task registry and dependencies, and starts the
    /// worker (unless producer-only).
    pub async fn start(self) -> Result<Scheduler, Error> {
        // Validate before connecting: a registry or dependency mistake needs no Redis to report.
        let registry = self.validated_registry()?;
        let backend: Arc<dyn Backend> = match self.url.strip_prefix("memory://") {
            Some(name) => {
                crate::backend::redis::keys::Keys::new(&self.config.namespace)?;
                Arc::new(MemoryBackend::named(name, self.config.clone()))
            }
            None => Arc::new(RedisBackend::connect(&self.url, self.config.clone()).await?),
        };
        self.start_on(backend, registry).await
    }

    /// The registry of every task in the binary plus the explicit ones; with a
    /// worker, every task's dependencies must be provided.
    pub(crate) fn validated_registry(&self) -> Result<Registry, Error> {
        let registry = Registry::collect(&self.explicit)?;
        if self.worker.is_some() {
            registry.check_dependencies(&self.deps)?;
        }
        Ok(registry)
    }

    /// Starts on a given backend with an already validated registry (the
    /// testing harness passes its own backend).
    pub(crate) async fn start_on(
        self,
        backend: Arc<dyn Backend>,
        registry: Registry,
    ) -> Result<Scheduler, Error> {
        let health = HealthState::new();
        backend.attach_health(&health);
        let worker = match self.worker {
            Some(config) => Some(
                Worker::start(
                    Arc::clone(&backend),
                    registry.clone(),
                    self.deps.clone(),
                    config,
                    health.clone(),
                )
                .await?,
            ),
            None => None,
        };
        info!(
            namespace = %backend.config().namespace,
            worker = worker.is_some(),
            tasks = %registry.describe(),
            "scheduler started"
        );
        Ok(Scheduler {
            inner: Arc::new(Inner {
                backend,
                registry,
                deps: self.deps,
                health,
                worker: Mutex::new(worker),
            }),
        })
    }

    pub(crate) fn scheduler_config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub(crate) fn dependencies(&self) -> &Dependencies {
        &self.deps
    }

    pub(crate) fn explicit_tasks(&self) -> &[&'static TaskRegistration] {
        &self.explicit
    }
}

fn ceil_ms(when: DateTime<Utc>) -> Result<i64, Error> {
    let micros = when
        .timestamp_micros()
        .checked_add(999)
        .ok_or_else(|| Error::InvalidRunTime(when.to_rfc3339()))?;
    let ms = micros.div_euclid(1000);
    if !(-MAX_MS..MAX_MS).contains(&ms) {
        return Err(Error::InvalidRunTime(when.to_rfc3339()));
    }
    Ok(ms)
}

fn when_arg(when: When) -> Result<(&'static str, i64), Error> {
    match when {
        When::Now => Ok(("now", 0)),
        When::At(at) => Ok(("at", ceil_ms(at)?)),
        When::After(delay) => {
            let ms = delay.as_micros().div_ceil(1000);
            if ms >= MAX_MS as u128 {
                return Err(Error::InvalidRunTime(format!("{delay:?} from now")));
            }
            Ok(("after", ms as i64))
        }
    }
}

/// The characters of a request nonce: 64 of them, 6 bits each.
const NONCE_ALPHABET: &[u8; 64] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// A random tag stored in the job record, so that an enqueue re-sent after a
/// lost reply is recognised as the same request. 8 characters (48 random bits)
/// rather than 16 hex digits: it sits in every pending record, and a clash only
/// matters between two requests for the same id while the first one's job
/// exists (odds 2^-48 per such pair).
fn nonce() -> String {
    let mut bits = fastrand::u64(..);
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        out.push(char::from(NONCE_ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

/// The calls of a bulk enqueue, in order: runs of jobs in batches of
/// [`BULK_BATCH`], and each job with a request id alone (its reply is logged
/// per call).
fn bulk_calls(jobs: &[NewJob]) -> Vec<&[NewJob]> {
    let mut calls = Vec::new();
    let mut rest = jobs;
    while !rest.is_empty() {
        let run = rest
            .iter()
            .take(BULK_BATCH)
            .take_while(|job| job.request_id.is_none())
            .count()
            .max(1);
        let (call, tail) = rest.split_at(run);
        calls.push(call);
        rest = tail;
    }
    calls
}

/// [`Error::WrongTask`] unless the job is one of task `T`.
fn check_task<T: Task>(job_id: &str, info: &JobInfo) -> Result<(), Error> {
    if info.task == T::NAME {
        return Ok(());
    }
    Err(Error::WrongTask {
        job_id: job_id.to_string(),
        expected: T::NAME.to_string(),
        found: info.task.clone(),
    })
}

fn enqueue_outcome(reply: EnqueueReply) -> Result<EnqueueOutcome, Error> {
    let run_at = crate::clock::time_from_ms(reply.run_at_ms);
    match reply.code.as_str() {
        "enqueued" => Ok(EnqueueOutcome::Enqueued {
            generation: reply.generation,
            run_at,
        }),
        "duplicate" => {
            let state = match reply.state.as_str() {
                "running" => PendingState::Running,
                "queued" => PendingState::Queued,
                _ => PendingState::Deferred,
            };
            Ok(EnqueueOutcome::Duplicate {
                task: reply.task,
                state,
                generation: reply.generation,
                run_at,
            })
        }
        "finished" => Ok(EnqueueOutcome::RecentlyFinished {
            state: FinishedState::parse(&reply.state).ok_or_else(|| {
                Error::Corrupt(format!("unexpected finished state {:?}", reply.state))
            })?,
            generation: reply.generation,
            finished_at: run_at,
        }),
        other => Err(Error::Corrupt(format!(
            "unexpected enqueue outcome {other:?}"
        ))),
    }
}

impl Scheduler {
    /// Starts building a scheduler on the Redis at `url`
    /// (`redis://[user:password@]host:port/db`, `rediss://` for TLS).
    pub fn builder(url: impl Into<String>) -> SchedulerBuilder {
        SchedulerBuilder {
            url: url.into(),
            config: SchedulerConfig::default(),
            worker: Some(WorkerConfig::default()),
            deps: Dependencies::default(),
            explicit: Vec::new(),
        }
    }

    /// Serializes and checks one typed request.
    fn prepare<T: Task>(&self, request: JobRequest<T>) -> Result<NewJob, Error> {
        if let Some(request_id) = &request.request_id {
            validate_request_id(request_id)?;
        }
        let id = match request.id.or_else(|| request.request_id.clone()) {
            Some(id) => {
                validate_job_id(&id)?;
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let payload = encode_args(T::NAME, T::registration().params, &request.args)?;
        let mut job = self.prepare_raw(
            id,
            T::NAME,
            payload,
            request.when,
            request.max_attempts.or(T::OPTIONS.max_attempts),
        )?;
        job.unique_until_result_expires = request.unique_until_result_expires;
        if let Some(request_id) = request.request_id {
            // Random nonces never start with ':': the job this request
            // created is recognised by it while it exists.
            job.nonce = format!(":{request_id}");
            job.request_id = Some(request_id);
        }
        Ok(job)
    }

    fn prepare_raw(
        &self,
        id: String,
        task: &str,
        payload: Vec<u8>,
        when: When,
        max_attempts: Option<u32>,
    ) -> Result<NewJob, Error> {
        let limit = self.inner.backend.config().max_payload_bytes;
        if payload.len() > limit {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                limit,
            });
        }
        let max_attempts = max_attempts
            .unwrap_or(self.inner.backend.config().default_max_attempts)
            .max(1);
        Ok(NewJob {
            id,
            task: task.to_string(),
            payload,
            max_attempts,
            when: when_arg(when)?,
            nonce: nonce(),
            unique_until_result_expires: false,
            request_id: None,
        })
    }

    /// Enqueues a typed job. If a job with this id is already deferred, queued or
    /// running, nothing changes and [`EnqueueOutcome::Duplicate`] says where it is
    /// and which task it belongs to (job ids are shared by all tasks).
    /// A finished job's id is free at once, unless the request asks for
    /// [`unique_until_result_expires`](JobRequest::unique_until_result_expires)
    /// ([`EnqueueOutcome::RecentlyFinished`] while its outcome is kept).
    pub async fn enqueue<T: Task>(&self, request: JobRequest<T>) -> Result<EnqueueOutcome, Error> {
        let job = self.prepare(request)?;
        self.enqueue_prepared(job).await
    }

    async fn enqueue_prepared(&self, job: NewJob) -> Result<EnqueueOutcome, Error> {
        let replies = self.observe(
            self.inner
                .backend
                .enqueue("enqueue", "keep", std::slice::from_ref(&job))
                .await,
        )?;
        let reply = replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("empty enqueue reply".into()))?;
        let outcome = enqueue_outcome(reply)?;
        match &outcome {
            EnqueueOutcome::Enqueued { generation, run_at } => {
                debug!(job_id = %job.id, task = %job.task, generation, %run_at, "job enqueued")
            }
            EnqueueOutcome::Duplicate {
                state, generation, ..
            } => {
                debug!(job_id = %job.id, task = %job.task, generation, ?state, "duplicate enqueue ignored")
            }
            EnqueueOutcome::RecentlyFinished {
                state, generation, ..
            } => {
                debug!(job_id = %job.id, task = %job.task, generation, ?state, "enqueue of a recently finished id ignored")
            }
        }
        Ok(outcome)
    }

    /// Enqueues a job of a task known only by name, with JSON arguments (the
    /// untyped path: prefer the typed helpers of `#[task]`).
    ///
    /// `args` is a JSON object by parameter name (`{"user": "ada", "n": 3}`) or
    /// an array in the parameters' order (`["ada", 3]`). For a `#[task]`
    /// registered in this binary, an object is stored as the array (arguments
    /// are stored by position) and is checked first: an unknown or missing name,
    /// or an array of the wrong length, is [`Error::Arguments`] instead of a job
    /// that fails when it runs. For a task this binary does not know (or one
    /// registered by hand with `params: None`), `args` is stored unchanged.
    pub async fn enqueue_untyped(
        &self,
        task: &str,
        job_id: Option<&str>,
        args: &serde_json::Value,
        when: When,
    ) -> Result<EnqueueOutcome, Error> {
        let id = match job_id {
            Some(id) => {
                validate_job_id(id)?;
                id.to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let registration = self.inner.registry.get(task);
        let payload = match registration.and_then(|r| r.params) {
            Some(params) => encode_args(task, None, &to_positional(task, params, args)?)?,
            None => encode_args(task, None, args)?,
        };
        let max_attempts = registration.and_then(|t| t.options.max_attempts);
        let job = self.prepare_raw(id, task, payload, when, max_attempts)?;
        self.enqueue_prepared(job).await
    }

    /// Enqueues many typed jobs; each is deduplicated on its own, as by
    /// [`Scheduler::enqueue`]. Outcomes come back in order.
    ///
    /// The jobs go to Redis in batches of 250, one atomic script call each,
    /// with up to 4 batches in flight at once (pipelined on the connection).
    /// The call as a whole is not atomic: when it returns an error, the
    /// batches that Redis had answered are enqueued. Calling again with the
    /// same job ids is safe: those jobs are reported as duplicates, and the
    /// rest are enqueued.
    ///
    /// ```
    /// #[scheduler::task]
    /// async fn notify(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://enqueue-many")
    ///     .register::<notify>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let requests = (0..1_000u64).map(|user| notify::job(user).id(format!("notify-{user}")));
    /// let outcomes = s.enqueue_many(requests).await?;
    /// assert!(outcomes.iter().all(|o| o.is_enqueued()));
    /// // Sent again, every job is a duplicate: nothing runs twice.
    /// let again = s.enqueue_many((0..1_000u64).map(|user| notify::job(user).id(format!("notify-{user}")))).await?;
    /// assert!(again.iter().all(|o| !o.is_enqueued()));
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_many<T: Task>(
        &self,
        requests: impl IntoIterator<Item = JobRequest<T>>,
    ) -> Result<Vec<EnqueueOutcome>, Error> {
        use futures_util::stream::{self, StreamExt};
        let jobs = requests
            .into_iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<_>, _>>()?;
        let batches: Vec<_> = stream::iter(bulk_calls(&jobs))
            .map(|chunk| self.inner.backend.enqueue("enqueue", "keep", chunk))
            .buffered(BULK_IN_FLIGHT)
            .collect()
            .await;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for batch in batches {
            for reply in self.observe(batch)? {
                outcomes.push(enqueue_outcome(reply)?);
            }
        }
        Ok(outcomes)
    }

    /// Replaces the pending job with this id by the new request in one atomic
    /// step (the seed's "cancel, then queue", without its race). When the job is
    /// running, `if_running` decides. The answer names every generation it
    /// affected: the pending one it replaced, the running one it aborted or
    /// queued after, and a replacement already waiting behind the running one
    /// whose place it took (see [`ReplaceOutcome`]).
    ///
    /// ```
    /// use chrono::{TimeDelta, Utc};
    /// use scheduler::{EnqueueOutcome, IfRunning, ReplaceOutcome};
    ///
    /// #[scheduler::task]
    /// async fn remind(user: u64) -> Result<(), String> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), scheduler::Error> {
    /// let s = scheduler::Scheduler::builder("memory://replace")
    ///     .register::<remind>()
    ///     .producer_only()
    ///     .start()
    ///     .await?;
    /// let at = Utc::now() + TimeDelta::hours(1);
    /// let EnqueueOutcome::Enqueued { generation: first, .. } =
    ///     s.enqueue(remind::job(7).id("remind-7").at(at)).await?
    /// else {
    ///     panic!("the id was free");
    /// };
    /// // Re-planned half an hour later: the first job never runs, and the
    /// // answer names it.
    /// let request = remind::job(7).id("remind-7").at(at + TimeDelta::minutes(30));
    /// match s.replace(request, IfRunning::Abort).await? {
    ///     ReplaceOutcome::Replaced { replaced_generation, .. } => {
    ///         assert_eq!(replaced_generation, first)
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # s.close().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// It acts only on a job of task `T`: when the id is held by a pending or
    /// running job of another task, nothing changes and the answer is
    /// [`Error::WrongTask`] (job ids are shared by all tasks).
    pub async fn replace<T: Task>(
        &self,
        request: JobRequest<T>,
        if_running: IfRunning,
    ) -> Result<ReplaceOutcome, Error> {
        let job = self.prepare(request)?;
        let policy = match if_running {
            IfRunning::Abort => "abort",
            IfRunning::QueueAfter => "after",
            IfRunning::Keep => "keep",
        };
        let replies = self.observe(
            self.inner
                .backend
                .enqueue("replace", policy, std::slice::from_ref(&job))
                .await,
        )?;
        let reply = replies
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("empty replace reply".into()))?;
        let run_at = crate::clock::time_from_ms(reply.run_at_ms);
        let generation = reply.generation;
        let other = reply.other;
        let replaced_waiting = (reply.replaced > 0).then_some(reply.replaced);
        let outcome = match reply.code.as_str() {
            "enqueued" => ReplaceOutcome::Enqueued { generation, run_at },
            "replaced" => ReplaceOutcome::Replaced {
                generation,
                run_at,
                previous_run_at: crate::clock::time_from_ms(other),
                replaced_generation: reply.replaced,
            },
            "aborted" => ReplaceOutcome::AbortedRunning {
                generation,
                run_at,
                aborted_generation: other as u64,
                replaced_waiting,
            },
            "queued_after" => ReplaceOutcome::QueuedAfterRunning {
                generation,
                run_at,
                running_generation: other as u64,
                replaced_waiting,
            },
            "running" => ReplaceOutcome::Running { generation },
            "wrong_task" => {
                return Err(Error::WrongTask {
                    job_id: job.id,
                    expected: job.task,
                    found: reply.task,
                })
            }
            code => {
                return Err(Error::Corrupt(format!(
                    "unexpected replace outcome {code:?}"
                )))
            }
        };
        info!(job_id = %job.id, task = %job.task, ?outcome, "job replaced");
        Ok(outcome)
    }

    /// Cancels a job: a deferred or queued one is removed and never starts; a
    /// running one is told to abort (its future is dropped) and ends `Cancelled`,
    /// and a replacement waiting to run after it is removed too
    /// ([`CancelOutcome::AbortSignalled`] names both generations).
    /// Returns at once; see [`cancel_and_wait`](Self::cancel_and_wait).
    pub async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        let outcome = self.observe(self.inner.backend.cancel(job_id, None, None).await)?;
        info!(job_id, ?outcome, "cancel");
        Ok(outcome)
    }

    /// Cancels job `job_id` as [`cancel`](Self::cancel) does, only if it is a
    /// job of task `T` (what `#[task]`'s `cancel` helper calls). When the id
    /// is held by a job of another task (pending, running, or finished with
    /// its outcome kept), nothing changes and the answer is [`Error::WrongTask`].
    pub async fn cancel_typed<T: Task>(&self, job_id: &str) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        let outcome = self.observe(self.inner.backend.cancel(job_id, None, Some(T::NAME)).await)?;
        info!(job_id, task = T::NAME, ?outcome, "cancel");
        Ok(outcome)
    }

    /// Cancels only the given generation of a job: a stale cancel never touches
    /// a later job that reuses the id.
    pub async fn cancel_generation(
        &self,
        job_id: &str,
        generation: u64,
    ) -> Result<CancelOutcome, Error> {
        validate_job_id(job_id)?;
        self.observe(
            self.inner
                .backend
                .cancel(job_id, Some(generation), None)
                .await,
        )
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
                        source: fred::error::Error::new(
                            fred::error::ErrorKind::Timeout,
                            "the job is still running",
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(outcome)
    }

    /// Where a job is now.
    pub async fn status(&self, job_id: &str) -> Result<JobStatus, Error> {
        Ok(self
            .info(job_id)
            .await?
            .map(|i| i.status)
            .unwrap_or(JobStatus::NotFound))
    }

    /// Where job `job_id` of task `T` is now (what `#[task]`'s `status` helper
    /// calls): [`Error::WrongTask`] when the id is held by a job of another task.
    pub async fn status_typed<T: Task>(&self, job_id: &str) -> Result<JobStatus, Error> {
        let Some(info) = self.info(job_id).await? else {
            return Ok(JobStatus::NotFound);
        };
        check_task::<T>(job_id, &info)?;
        Ok(info.status)
    }

    /// Everything known about a job (`None` if unknown or expired).
    pub async fn info(&self, job_id: &str) -> Result<Option<JobInfo>, Error> {
        validate_job_id(job_id)?;
        self.observe(self.inner.backend.inspect(job_id).await)
    }

    /// The stored result of a completed job of task `T`, decoded
    /// ([`Error::WrongTask`] when the id is held by a job of another task).
    pub async fn result<T>(&self, job_id: &str) -> Result<Option<T::Output>, Error>
    where
        T: Task,
        T::Output: DeserializeOwned,
    {
        let Some(info) = self.info(job_id).await? else {
            return Ok(None);
        };
        check_task::<T>(job_id, &info)?;
        if info.status != JobStatus::Completed {
            return Ok(None);
        }
        let json = info.result.unwrap_or_else(|| "null".to_string());
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|source| Error::Payload {
                task: T::NAME.to_string(),
                source,
            })
    }

    /// The deferred and queued jobs of task `T`, with typed arguments, sorted by
    /// run time. Walks this namespace's pending jobs (never the keyspace).
    /// Arguments stored by position and objects written by earlier versions
    /// both decode.
    pub async fn pending<T: Task>(&self) -> Result<Vec<PendingJob<T::Args>>, Error> {
        let params = T::registration().params;
        let mut jobs = Vec::new();
        for raw in self.pending_raw(Some(T::NAME)).await? {
            let args = positional::decode(T::NAME, params, &raw.payload)?;
            jobs.push(PendingJob {
                job_id: raw.id,
                task: raw.task,
                generation: raw.generation,
                run_at: crate::clock::time_from_ms(raw.run_at_ms),
                attempts: raw.attempts,
                args,
            });
        }
        Ok(jobs)
    }

    /// Every deferred and queued job, with its arguments as JSON, sorted by run time.
    ///
    /// Arguments are stored by position; for a `#[task]` registered in this
    /// binary, a stored array with one element per parameter is shown as an
    /// object by parameter name (`{"user": "ada", "n": 3}`), the shape
    /// [`enqueue_untyped`](Self::enqueue_untyped) takes. Anything else (a task
    /// this binary does not know, an object written by an earlier version, an
    /// array of another length) is returned as stored.
    pub async fn pending_untyped(&self) -> Result<Vec<PendingJob<serde_json::Value>>, Error> {
        self.pending_raw(None)
            .await?
            .into_iter()
            .map(|raw| {
                let stored: serde_json::Value = positional::decode(&raw.task, None, &raw.payload)?;
                let args = match self.inner.registry.get(&raw.task).and_then(|r| r.params) {
                    Some(params) => to_named(params, stored),
                    None => stored,
                };
                Ok(PendingJob {
                    job_id: raw.id,
                    task: raw.task,
                    generation: raw.generation,
                    run_at: crate::clock::time_from_ms(raw.run_at_ms),
                    attempts: raw.attempts,
                    args,
                })
            })
            .collect()
    }

    async fn pending_raw(&self, task: Option<&str>) -> Result<Vec<RawPending>, Error> {
        let mut cursor = "0".to_string();
        let mut all = Vec::new();
        loop {
            let (next, mut page) = self.inner.backend.list_pending(task, &cursor, 500).await?;
            all.append(&mut page);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        all.sort_by(|a, b| (a.run_at_ms, &a.id).cmp(&(b.run_at_ms, &b.id)));
        Ok(all)
    }

    /// Dead-lettered jobs, newest first: at most `count` of them, after
    /// skipping the `offset` newest (`count` 0 returns none).
    pub async fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<Vec<DeadLetter>, Error> {
        self.inner.backend.dead_letters(offset, count).await
    }

    /// Puts a dead-lettered job back in the queue with fresh attempts; returns its
    /// new generation, or `None` if the id is not in the dead letter or pending.
    pub async fn requeue_dead_letter(&self, job_id: &str) -> Result<Option<u64>, Error> {
        validate_job_id(job_id)?;
        self.inner.backend.requeue_dead(job_id, &nonce()).await
    }

    /// Empties the dead letter; returns how many entries it held.
    pub async fn purge_dead_letters(&self) -> Result<u64, Error> {
        self.inner.backend.purge_dead().await
    }

    /// The validated task registry (log it at start-up to see what this binary runs).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The provided dependencies; insert into them to override one at run time.
    pub fn dependencies(&self) -> &Dependencies {
        &self.inner.deps
    }

    /// The backend (for `__private` test hooks).
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Records whether a call reached Redis, for [`health`](Self::health).
    fn observe<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match &result {
            Ok(_) => self.inner.health.ok(),
            Err(e) if e.is_transient() || matches!(e, Error::Tls(_)) => {
                self.inner.health.degraded(&e.to_string())
            }
            Err(_) => {}
        }
        result
    }

    /// Whether the last Redis calls (the worker's and this handle's) worked.
    pub fn health(&self) -> Health {
        self.inner.health.get()
    }

    /// Risky Redis settings found at start-up (also logged as warnings):
    /// a `maxmemory-policy` that evicts keys, persistence turned off. Empty
    /// when all is well, for the in-memory backend, or when the Redis user may
    /// not run `CONFIG GET`.
    pub fn startup_warnings(&self) -> Vec<String> {
        self.inner.backend.startup_warnings()
    }

    /// A receiver that sees every health change.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    /// Stops the worker gracefully (no new claims; running jobs get the grace
    /// period, then are released to other workers) and closes the connections.
    /// Other clones of the handle fail with [`Error::Closed`]-like errors after this.
    pub async fn close(&self) {
        let worker = self.inner.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            worker.close().await;
        }
        self.inner.backend.close().await;
        info!("scheduler closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_times_round_up_to_the_millisecond() {
        let at = DateTime::from_timestamp_micros(1_000_000_300).expect("valid");
        assert_eq!(ceil_ms(at).ok(), Some(1_000_001));
        let exact = DateTime::from_timestamp_millis(5_000).expect("valid");
        assert_eq!(ceil_ms(exact).ok(), Some(5_000));
        // chrono's whole range fits in a score (2^53 ms is about 285,000 years).
        assert!(ceil_ms(DateTime::<Utc>::MAX_UTC).is_ok());
        assert!(ceil_ms(DateTime::<Utc>::MIN_UTC).is_ok());
        assert!(when_arg(When::After(Duration::from_secs(u64::MAX))).is_err());
        assert_eq!(
            when_arg(When::After(Duration::from_micros(1500))).ok(),
            Some(("after", 2))
        );
    }

    #[test]
    fn nonces_are_eight_url_safe_characters_and_differ() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| NONCE_ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
    }
}
