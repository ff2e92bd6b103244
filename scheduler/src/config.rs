//! Settings of a scheduler and of its worker, with their defaults.

use std::time::Duration;

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
    /// Largest serialized argument payload accepted. Default 512 KiB.
    pub max_payload_bytes: usize,
    /// Attempts for tasks that set none. Default 5.
    pub default_max_attempts: u32,
    /// Timeout of one attempt for tasks that set none. Default 300 s.
    pub default_timeout: Duration,
    /// When set, enqueue, replace and cancel return only once this many
    /// replicas acknowledged the write (`WAIT`), so a failover cannot lose an
    /// acknowledged job. Default: off (Redis replication is asynchronous).
    pub durable: Option<Durability>,
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
        }
    }
}

/// Settings of the worker a scheduler runs (if any).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Most jobs running at once in this process. Default 10.
    pub concurrency: usize,
    /// How long a claimed job stays owned without a heartbeat. Default 30 s.
    pub lease: Duration,
    /// How often leases are renewed. Default a third of the lease.
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
        }
    }
}

impl WorkerConfig {
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.lease / 3)
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
