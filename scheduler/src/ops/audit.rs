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
use crate::Error;

/// Runs an audit every `interval` until `stop` fires. A namespace found
/// stored in a layout newer than this version reads (moved while this
/// worker ran) makes the worker stop claiming (`stop_claiming`) and report
/// itself broken: its jobs would be misread.
pub(crate) async fn audit_loop(
    backend: Arc<dyn Backend>,
    interval: Duration,
    lease: Duration,
    health: HealthState,
    stop: CancellationToken,
    stop_claiming: CancellationToken,
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
            Err(e @ Error::NewerLayout { .. }) => {
                // The jobs it runs end as usual; it audits no more.
                let reason = format!("{e}; this worker claims no more jobs");
                error!("{reason}");
                health.broken(&reason);
                stop_claiming.cancel();
                stop.cancelled().await;
                return;
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
