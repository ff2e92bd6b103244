//! The notification service of the scheduler guide, on `scheduler` and axum.
//!
//! Endpoints defer, re-plan and cancel notifications through the
//! `send_notification` task; the notification manager reaches the task as an
//! injected dependency, and the scheduler handle reaches handlers through
//! axum's `State` (the guide's `Depends(get_scheduler)`).

pub mod api;
pub mod notifications;

pub use api::{router, AppState};
pub use notifications::{send_notification, Delivery, Message, NotificationManager};

/// Installs the process's Prometheus recorder, before the scheduler starts
/// (the scheduler registers its metrics with the recorder installed when it
/// first records them), with histogram buckets from 1 ms to 60 s for the
/// `*_seconds` metrics (lateness, queue wait, run time).
pub fn install_prometheus(
) -> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: [f64; 14] = [
        0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The scheduler installs no signal
/// handlers: the application owns them, as the guide's `handle_signals=False`.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
