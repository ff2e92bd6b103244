//! The health a scheduler reports: whether its last Redis calls worked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

/// Whether the scheduler can reach Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The last Redis calls worked.
    Healthy,
    /// The last Redis call failed (the worker keeps retrying), data loss or
    /// an outcome Redis refused was detected (held for 60 s), or the worker
    /// broke (one of its internal tasks died: it claims no more jobs; held
    /// until the process restarts).
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
    /// Until when an alert (data loss) keeps the health degraded, whatever
    /// later calls succeed, so that periodic health checks see it.
    alert_until: Arc<Mutex<Option<Instant>>>,
    /// Set when the worker broke for good (an internal task died): the health
    /// stays degraded with this reason whatever later calls do.
    broken: Arc<Mutex<Option<String>>>,
}

/// How long an alert keeps the health degraded.
const ALERT_HOLD: Duration = Duration::from_secs(60);

impl HealthState {
    pub(crate) fn new() -> Self {
        HealthState {
            tx: watch::Sender::new(Health::Healthy),
            alert_until: Arc::new(Mutex::new(None)),
            broken: Arc::new(Mutex::new(None)),
        }
    }

    /// Reports that the worker cannot work any more (an internal task died):
    /// degraded with this reason for good.
    pub(crate) fn broken(&self, reason: &str) {
        if let Ok(mut broken) = self.broken.lock() {
            if broken.is_some() {
                return;
            }
            *broken = Some(reason.to_string());
        }
        tracing::error!(reason, "worker broken, health degraded for good");
        self.tx.send_replace(Health::Degraded {
            reason: reason.to_string(),
            since: SystemTime::now(),
        });
    }

    fn is_broken(&self) -> bool {
        self.broken.lock().map(|b| b.is_some()).unwrap_or(true)
    }

    /// Reports something worse than a failed call (e.g. data lost): degraded
    /// with this reason, replacing any other, for `ALERT_HOLD`.
    pub(crate) fn alert(&self, reason: &str) {
        if self.is_broken() {
            tracing::error!(reason, "alert while the worker is broken");
            return;
        }
        if let Ok(mut until) = self.alert_until.lock() {
            *until = Some(Instant::now() + ALERT_HOLD);
        }
        self.tx.send_replace(Health::Degraded {
            reason: reason.to_string(),
            since: SystemTime::now(),
        });
    }

    pub(crate) fn ok(&self) {
        let alerting = self
            .alert_until
            .lock()
            .map(|u| u.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false);
        if alerting || self.is_broken() {
            return;
        }
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
