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
