//! Settings of a scheduler and of its worker, with their defaults.

use std::time::Duration;

use crate::api::error::Error;
use crate::api::routing::Queues;

/// Settings shared by producers and workers.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Key prefix (hash tag) of every key. Default `scheduler`.
    pub namespace: String,
    /// How long one Redis command may take before it fails with
    /// [`Error::Timeout`](crate::Error::Timeout). Default 5 s.
    pub command_timeout: Duration,
    /// How long a finished job's outcome and result are kept. Default 1 h;
    /// zero keeps nothing. Never blocks reuse of the id.
    pub keep_result: Duration,
    /// Most entries kept in the dead letter (oldest dropped first). Default 10,000.
    pub dead_letter_cap: u32,
    /// Largest serialized argument payload accepted, and largest result (its
    /// JSON) a worker stores: a task whose result is larger fails for good
    /// (dead-lettered, the reason names the size and the limit). Default 512 KiB.
    pub max_payload_bytes: usize,
    /// Attempts for tasks that set none. Default 5.
    pub default_max_attempts: u32,
    /// Timeout of one attempt for tasks that set none. Default 300 s.
    pub default_timeout: Duration,
    /// When set, enqueue, replace and cancel return only once this many
    /// replicas acknowledged the write (`WAIT`), so a failover cannot lose an
    /// acknowledged job. Default: off (Redis replication is asynchronous).
    pub durable: Option<Durability>,
    /// How many hash tags (Redis Cluster slots) the namespace is split over.
    /// Default 1: one slot, the layout of every earlier version. With more,
    /// each job id lives in one shard (a stable hash of the id), so that its
    /// changes stay atomic, and a Redis Cluster spreads the shards over its
    /// masters. Every process of a namespace must use the same number; see
    /// the README's "Sharding" for what is global and how to change it.
    /// The memory backend ignores it.
    pub shards: u16,
    /// While the number of shards is changed: the number before. The jobs
    /// still pending or running in that layout stay there and are run from
    /// there, every call about one of them goes there, and new jobs go to
    /// the new layout (see the README's "Changing the number of shards").
    /// Default `None`.
    pub draining_from: Option<u16>,
}

/// How many replicas must acknowledge a write before it is reported done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must have the write.
    pub replicas: u32,
    /// How long to wait for them before failing with
    /// [`Error::NotReplicated`](crate::Error::NotReplicated).
    pub timeout: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            namespace: "scheduler".to_string(),
            command_timeout: Duration::from_secs(5),
            keep_result: Duration::from_secs(3600),
            dead_letter_cap: 10_000,
            max_payload_bytes: 512 * 1024,
            default_max_attempts: 5,
            default_timeout: Duration::from_secs(300),
            durable: None,
            shards: 1,
            draining_from: None,
        }
    }
}

/// Settings of the worker a scheduler runs (if any).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Most jobs running at once in this process. Default 10.
    pub concurrency: usize,
    /// How long a claimed job stays owned without a heartbeat. Default 30 s;
    /// at least 100 ms.
    ///
    /// A worker that cannot confirm a job's lease (Redis unreachable, renewals
    /// failing or hanging) drops the job's future and fires
    /// [`JobContext::cancelled`](crate::JobContext::cancelled) once the lease
    /// minus a safety margin of `max(lease / 10, 50 ms)` has passed since it
    /// sent the claim or the last renewal Redis confirmed, so that the job is
    /// stopped before Redis can give it to another worker. It records nothing;
    /// the job runs again elsewhere as a new attempt. This assumes the worker's
    /// and the Redis server's clocks advance at rates that differ by less than
    /// a few percent over one lease.
    pub lease: Duration,
    /// How often leases are renewed. Default a third of the lease; must be
    /// longer than zero and shorter than the lease minus its safety margin.
    pub heartbeat: Option<Duration>,
    /// On `close()`, how long running jobs may finish before they are aborted
    /// and released to other workers. Default 10 s.
    pub shutdown_grace: Duration,
    /// First retry delay; doubled per attempt, with jitter. Default 1 s.
    pub retry_base: Duration,
    /// Longest retry delay. Default 1 h.
    pub retry_max: Duration,
    /// Longest sleep without news from Redis, a safety net for lost
    /// notifications (the worker normally sleeps until the next due job or
    /// lease expiry, or until woken). Default 5 s.
    pub max_idle: Duration,
    /// How often the worker checks that every job record has its index entry
    /// and the reverse (a check of four counts; only a difference makes it
    /// walk the namespace, repair, dead-letter and report through `health()`).
    /// Keys evicted under `maxmemory-policy allkeys-*` are the usual cause.
    /// Default 10 s.
    pub audit_interval: Duration,
    /// The queues it claims from, and in what order. Default: the queues of
    /// the tasks registered in this process ([`Queues::OfItsTasks`]). Only
    /// the tasks of these queues need their dependencies provided.
    pub queues: Queues,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            lease: Duration::from_secs(30),
            heartbeat: None,
            shutdown_grace: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            max_idle: Duration::from_secs(5),
            audit_interval: Duration::from_secs(10),
            queues: Queues::OfItsTasks,
        }
    }
}

/// Shortest lease accepted: Redis keeps leases in whole milliseconds, and the
/// local validity window (lease minus [`WorkerConfig::lease_margin`]) must leave
/// room for a heartbeat.
pub(crate) const MIN_LEASE: Duration = Duration::from_millis(100);

/// Smallest safety margin taken off a lease (see [`WorkerConfig::lease_margin`]).
const MIN_LEASE_MARGIN: Duration = Duration::from_millis(50);

impl WorkerConfig {
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.lease / 3)
    }

    /// How much earlier than its lease a worker gives a job up when it cannot
    /// confirm the lease: `max(lease / 10, 50 ms)`.
    ///
    /// A worker keeps running a job only until (the local monotonic instant at
    /// which it *sent* the claim or the last renewal that Redis confirmed) +
    /// lease − margin. Redis set that lease's expiry when it ran the command,
    /// which is after it was sent, so the job is dropped before Redis can hand
    /// it to another worker as long as, over one lease, the worker's monotonic
    /// clock and the Redis server's clock advance by amounts that differ by
    /// less than the margin minus the time the worker takes to drop a future
    /// (a task that blocks its thread cannot be dropped). With the 10 % margin
    /// that allows a clock rate difference of a few percent, far above what
    /// NTP-disciplined clocks show (well under 0.1 %), but no step of Redis's
    /// wall clock (Redis measures leases with `TIME`).
    pub(crate) fn lease_margin(&self) -> Duration {
        (self.lease / 10).max(MIN_LEASE_MARGIN)
    }

    /// How long after sending a claim or a confirmed renewal the worker may
    /// keep running the job.
    pub(crate) fn lease_validity(&self) -> Duration {
        self.lease.saturating_sub(self.lease_margin())
    }

    /// Checks the settings the worker cannot run with.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::Config(reason));
        if self.concurrency == 0 {
            return invalid("worker concurrency must be at least 1".into());
        }
        if self.lease < MIN_LEASE {
            return invalid(format!(
                "the lease ({:?}) must be at least {MIN_LEASE:?}",
                self.lease
            ));
        }
        let heartbeat = self.heartbeat_interval();
        if heartbeat.is_zero() {
            return invalid("the heartbeat interval must be longer than zero".into());
        }
        if heartbeat >= self.lease_validity() {
            return invalid(format!(
                "the heartbeat interval ({heartbeat:?}) must be shorter than the lease ({:?}) \
                 minus its safety margin ({:?}, see WorkerConfig::lease)",
                self.lease,
                self.lease_margin()
            ));
        }
        if self.max_idle.is_zero() {
            return invalid("max_idle must be longer than zero".into());
        }
        if self.audit_interval.is_zero() {
            return invalid("audit_interval must be longer than zero".into());
        }
        self.queues.validate()
    }

    /// The delay before attempt `attempt + 1`: exponential, capped, with jitter
    /// between 50 % and 100 %.
    pub(crate) fn retry_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = self.retry_base.saturating_mul(1_u32 << exp);
        let capped = base.min(self.retry_max);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let cfg = WorkerConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..WorkerConfig::default()
        };
        for _ in 0..100 {
            let d1 = cfg.retry_delay(1);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d3 = cfg.retry_delay(3);
            assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4));
            assert!(cfg.retry_delay(40) <= Duration::from_secs(10));
        }
    }
}
