//! The health a scheduler reports: whether its last Redis calls worked.

use std::time::SystemTime;

use tokio::sync::watch;

/// Whether the scheduler can reach Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last Redis calls worked.
    Healthy,
    /// The last Redis call failed; the worker keeps retrying.
    Degraded {
        /// What failed.
        reason: String,
        /// Since when.
        since: SystemTime,
    },
}

impl Health {
    /// Whether all is well.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// Shared writer of the health state; changes are logged once.
#[derive(Clone, Debug)]
pub(crate) struct HealthState {
    tx: watch::Sender<Health>,
}

impl HealthState {
    pub(crate) fn new() -> Self {
        HealthState {
            tx: watch::Sender::new(Health::Healthy),
        }
    }

    pub(crate) fn ok(&self) {
        self.tx.send_if_modified(|h| {
            if h.is_healthy() {
                false
            } else {
                tracing::info!("redis reachable again, health restored");
                *h = Health::Healthy;
                true
            }
        });
    }

    pub(crate) fn degraded(&self, reason: &str) {
        self.tx.send_if_modified(|h| match h {
            Health::Healthy => {
                tracing::warn!(reason, "health degraded");
                *h = Health::Degraded {
                    reason: reason.to_string(),
                    since: SystemTime::now(),
                };
                true
            }
            Health::Degraded { .. } => false,
        });
    }

    pub(crate) fn get(&self) -> Health {
        self.tx.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }
}
