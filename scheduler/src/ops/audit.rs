//! The worker's audit loop: finds job records and index entries that lost
//! their other half (keys evicted under `maxmemory-policy allkeys-*`, hand
//! edits), has the backend repair them, and reports what it found through
//! the log and `health()`, so that no job is stranded silently.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::backend::Backend;
use crate::ops::health::HealthState;

/// Runs an audit every `interval` until `stop` fires.
pub(crate) async fn audit_loop(
    backend: Arc<dyn Backend>,
    interval: Duration,
    lease: Duration,
    health: HealthState,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        match backend.audit(lease).await {
            Ok(repaired) if repaired.is_empty() => {}
            Ok(repaired) => {
                for (id, what) in &repaired {
                    error!(job_id = %id, repair = %what, "inconsistent job state repaired");
                }
                health.alert(&describe(&repaired));
            }
            Err(e) => warn!(error = %e, "auditing the namespace failed; trying again later"),
        }
    }
}

/// One line for `health()`: how many jobs, and the first one's story.
fn describe(repaired: &[(String, String)]) -> String {
    let Some((id, what)) = repaired.first() else {
        return "job state repaired".to_string();
    };
    let more = match repaired.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!(
        "job state lost a record or an index entry (evicted under maxmemory? see startup warnings): {} job(s) repaired; job {id:?}: {what}{more}",
        repaired.len()
    )
}
