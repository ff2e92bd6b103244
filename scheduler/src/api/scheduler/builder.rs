//! Building a scheduler: where Redis is, its settings, the dependencies tasks
//! receive, and whether it runs a worker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::Inner;
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::sharded::ShardedBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::Backend;
use crate::ops::health::HealthState;
use crate::ops::metrics::Metrics;
use crate::periodic::planner::Planner;
use crate::worker::Worker;

use crate::{
    Dependencies, Error, Registry, Scheduler, SchedulerConfig, Task, TaskRegistration, WorkerConfig,
};

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

    /// Splits the namespace over `shards` hash tags, so that one logical
    /// queue spreads over the masters of a Redis Cluster (see
    /// [`SchedulerConfig::shards`]). At least 1 (0 reads as 1).
    ///
    /// ```
    /// # async fn demo() -> Result<(), scheduler::Error> {
    /// let scheduler = scheduler::Scheduler::builder("redis-cluster://127.0.0.1:7000")
    ///     .namespace("app")
    ///     .shards(6)
    ///     .producer_only();
    /// # let _ = scheduler;
    /// # Ok(())
    /// # }
    /// ```
    pub fn shards(mut self, shards: u16) -> Self {
        self.config.shards = shards.max(1);
        self
    }

    /// Rolls out a change of [`shards`](Self::shards): `shards` is the
    /// number before. Every process of the namespace runs with both numbers
    /// until no job is left in the old layout ([`Scheduler::counts`] of a
    /// producer built with the old number and no `draining_from` reads
    /// zero), then with the new one alone.
    pub fn draining_from(mut self, shards: u16) -> Self {
        self.config.draining_from = Some(shards.max(1));
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
            None if self.config.shards > 1 || self.config.draining_from.is_some() => Arc::new(
                ShardedBackend::connect(
                    &self.url,
                    self.config.clone(),
                    self.config.shards,
                    self.config.draining_from,
                )
                .await?,
            ),
            None => Arc::new(RedisBackend::connect(&self.url, self.config.clone()).await?),
        };
        self.start_on(backend, registry).await
    }

    /// The registry of every task in the binary plus the explicit ones; with a
    /// worker, every task's dependencies must be provided.
    pub(crate) fn validated_registry(&self) -> Result<Registry, Error> {
        let registry = Registry::collect(&self.explicit)?;
        if let Some(worker) = &self.worker {
            registry.check_dependencies(&self.deps, &worker.queues)?;
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
        // The schedules of this binary's `#[task(cron = ...)]` tasks, stored
        // before this process's planner first looks at them. A mistake in
        // one fails the start; Redis refusing the call does not (the worker's
        // planner stores them later; an enqueue reports the error).
        let code_schedules_pending = match Planner::new(Arc::clone(&backend), registry.clone())
            .sync_code_schedules()
            .await
        {
            Ok(()) => false,
            Err(e @ Error::InvalidSchedule { .. }) => return Err(e),
            Err(e) => {
                warn!(error = %e, "the schedules of periodic tasks could not be stored at start-up");
                true
            }
        };
        let metrics = Metrics::new(&backend.config().namespace);
        let worker = match self.worker {
            Some(config) => Some(
                Worker::start(
                    Arc::clone(&backend),
                    registry.clone(),
                    self.deps.clone(),
                    config,
                    health.clone(),
                    metrics.clone(),
                    code_schedules_pending,
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
                metrics,
                worker: Mutex::new(worker),
                waiters: tokio::sync::OnceCell::new(),
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
