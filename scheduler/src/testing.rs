//! Test your scheduling without Redis and without waiting.
//!
//! [`TestScheduler`] is a [`Scheduler`] on the in-memory backend with a
//! [`ManualClock`]. Nothing runs by itself: [`advance`](TestScheduler::advance)
//! moves the clock and runs, in order, exactly the jobs due by then (retries
//! included), each to completion, deterministically.
//!
//! ```
//! use scheduler::testing::TestScheduler;
//! use scheduler::{JobRequest, JobStatus};
//! # use scheduler::{Task, TaskOptions, TaskRegistration, Location, JobContext, TaskFuture, Error};
//! # struct Ping;
//! # static PING: TaskRegistration = TaskRegistration {
//! #     name: "ping",
//! #     location: Location { file: file!(), line: line!(), column: column!(), module_path: module_path!() },
//! #     options: TaskOptions::DEFAULT,
//! #     params: None,
//! #     dependencies: Vec::new,
//! #     schedule: None,
//! #     run: |_ctx: JobContext, _payload: &[u8]| -> Result<TaskFuture, Error> { Ok(Box::pin(async { Ok(None) })) },
//! # };
//! # impl Task for Ping {
//! #     const NAME: &'static str = "ping";
//! #     const OPTIONS: TaskOptions = TaskOptions::DEFAULT;
//! #     type Args = ();
//! #     type Output = ();
//! #     fn registration() -> &'static TaskRegistration { &PING }
//! # }
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let test = TestScheduler::builder().register::<Ping>().start().await?;
//! test.enqueue(JobRequest::<Ping>::new(()).id("ping-1").after(Duration::from_secs(60))).await?;
//! assert_eq!(test.advance(Duration::from_secs(59)).await?, 0);
//! assert_eq!(test.advance(Duration::from_secs(1)).await?, 1);
//! assert_eq!(test.status("ping-1").await?, JobStatus::Completed);
//! # Ok::<(), scheduler::Error>(()) }).unwrap();
//! ```

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::config::{SchedulerConfig, WorkerConfig};
use crate::api::error::Error;
use crate::api::registry::Registry;
use crate::api::scheduler::{Scheduler, SchedulerBuilder};
use crate::api::task::Task;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, ClaimTicket, Serving};
pub use crate::clock::{Clock, ManualClock, SystemClock};
use crate::periodic::planner::Planner;
use crate::worker::executor::{Executor, StopHandle};

/// Most attempts one `run_until_idle` makes before it reports a runaway loop.
const MAX_RUNS: usize = 100_000;

/// A scheduler on the in-memory backend whose clock only moves when told to.
/// Derefs to [`Scheduler`], so enqueue, cancel, replace, status and
/// `pending::<T>()` work as usual.
pub struct TestScheduler {
    scheduler: Scheduler,
    clock: Arc<ManualClock>,
    backend: Arc<MemoryBackend>,
    executor: Executor,
    /// Plans the ticks of periodic schedules as the clock moves.
    planner: Planner,
}

impl std::fmt::Debug for TestScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestScheduler")
            .field("now", &self.clock.now())
            .finish_non_exhaustive()
    }
}

/// Builds a [`TestScheduler`].
#[derive(Debug)]
#[must_use = "call `.start().await`"]
pub struct TestSchedulerBuilder {
    inner: SchedulerBuilder,
    start: Option<DateTime<Utc>>,
    worker: WorkerConfig,
}

impl TestSchedulerBuilder {
    /// Starts the clock at this instant (default: the real time at start).
    pub fn start_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = Some(start);
        self
    }

    /// Provides a dependency (or a fake in place of the real one).
    pub fn provide<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.inner = self.inner.provide(value);
        self
    }

    /// Provides a shared, possibly unsized dependency (`Arc<dyn Trait>`).
    pub fn provide_arc<T: ?Sized + Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.inner = self.inner.provide_arc(value);
        self
    }

    /// Registers a task explicitly (tasks defined with `#[task]` are known anyway).
    pub fn register<T: Task>(mut self) -> Self {
        self.inner = self.inner.register::<T>();
        self
    }

    /// Replaces the shared settings (retention, attempts, timeouts).
    pub fn config(mut self, config: SchedulerConfig) -> Self {
        self.inner = self.inner.config(config);
        self
    }

    /// Retry backoff and the other worker settings used when running jobs.
    pub fn worker(mut self, config: WorkerConfig) -> Self {
        self.worker = config;
        self
    }

    /// Validates the registry and dependencies and builds the harness.
    pub async fn start(self) -> Result<TestScheduler, Error> {
        let clock = Arc::new(match self.start {
            Some(start) => ManualClock::starting_at(start),
            None => ManualClock::now_frozen(),
        });
        let config = self.inner.scheduler_config().clone();
        // The harness runs every job itself: all dependencies are needed.
        let registry = Registry::collect(self.inner.explicit_tasks())?;
        registry.check_dependencies(self.inner.dependencies(), &crate::Queues::OfItsTasks)?;
        let backend = Arc::new(MemoryBackend::new(
            config.clone(),
            Arc::clone(&clock) as Arc<dyn Clock>,
        ));
        let planner = Planner::new(Arc::clone(&backend) as Arc<dyn Backend>, registry.clone());
        let deps = self.inner.dependencies().clone();
        let scheduler = self
            .inner
            .producer_only()
            .start_on(Arc::clone(&backend) as Arc<dyn Backend>, registry.clone())
            .await?;
        let executor = Executor {
            registry,
            deps,
            config: self.worker,
            default_timeout: config.default_timeout,
            worker_id: "test".to_string(),
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            max_result_bytes: config.max_payload_bytes,
            metrics: scheduler.metrics().clone(),
            backend: crate::worker::context::ContextBackend(
                Arc::clone(&backend) as Arc<dyn Backend>
            ),
        };
        Ok(TestScheduler {
            scheduler,
            clock,
            backend,
            executor,
            planner,
        })
    }
}

impl Deref for TestScheduler {
    type Target = Scheduler;
    fn deref(&self) -> &Scheduler {
        &self.scheduler
    }
}

impl TestScheduler {
    /// Starts building a harness.
    pub fn builder() -> TestSchedulerBuilder {
        TestSchedulerBuilder {
            inner: Scheduler::builder("memory://").producer_only(),
            start: None,
            worker: WorkerConfig::default(),
        }
    }

    /// The scheduler handle (to pass to code under test).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The harness's clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The time on the harness's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs, once each, the jobs due now; returns how many attempts ran.
    /// Retries that become due are left for the next call. Periodic
    /// schedules are planned first, as a worker's planner would: the ticks
    /// due now (and missed ticks their policy keeps) run, and the next tick
    /// of each is planned.
    pub async fn run_pending(&self) -> Result<usize, Error> {
        self.planner.pass().await?;
        let claim = self
            .backend
            .claim(
                "test",
                usize::MAX,
                Duration::from_secs(3600),
                &ClaimTicket::default(),
                &Serving::everything(),
            )
            .await?;
        let mut ran = 0;
        for job in &claim.jobs {
            let finished = self.executor.run(job, StopHandle::new()).await;
            let batch = std::slice::from_ref(&finished);
            let codes = self.backend.complete(batch).await?;
            self.metrics().recorded(batch, &codes);
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs jobs until none is due at the current time (retries without delay
    /// included); returns how many attempts ran.
    pub async fn run_until_idle(&self) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let ran = self.run_pending().await?;
            if ran == 0 {
                return Ok(total);
            }
            total += ran;
            if total > MAX_RUNS {
                return Err(Error::Config(format!(
                    "more than {MAX_RUNS} attempts without reaching idle: a job keeps re-queuing itself"
                )));
            }
        }
    }

    /// Moves the clock forward by `by`, running every job due on the way at its
    /// own time; returns how many attempts ran.
    pub async fn advance(&self, by: Duration) -> Result<usize, Error> {
        let target = self.clock.now()
            + chrono::TimeDelta::from_std(by)
                .map_err(|_| Error::InvalidRunTime(format!("{by:?} from now")))?;
        self.advance_to(target).await
    }

    /// Moves the clock to `to` (never backwards), running every job due on the
    /// way at its own time; returns how many attempts ran. The ticks of
    /// periodic schedules are planned and run on the way, each at its
    /// instant.
    pub async fn advance_to(&self, to: DateTime<Utc>) -> Result<usize, Error> {
        let target = to.timestamp_millis();
        let mut total = self.run_until_idle().await?;
        loop {
            let next_job = self
                .backend
                .claim(
                    "test",
                    0,
                    Duration::ZERO,
                    &ClaimTicket::default(),
                    &Serving::everything(),
                )
                .await?
                .next_wake_us
                .map(crate::backend::ms_up);
            // A schedule whose next planning is due without a job at that
            // instant (a redefined one) stops the clock there too.
            let pass = self.planner.pass().await?;
            let next_plan = pass.next_ms.filter(|at| *at > pass.now_ms);
            let next = match (next_job, next_plan) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(at) if at <= target => {
                    self.clock.advance_to(crate::clock::time_from_ms(at));
                    total += self.run_until_idle().await?;
                }
                _ => break,
            }
        }
        self.clock.advance_to(to);
        total += self.run_until_idle().await?;
        self.backend.wake();
        Ok(total)
    }
}
