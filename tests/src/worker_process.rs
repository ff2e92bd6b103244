//! What every test worker binary does around its own set-up: start the
//! scheduler or exit with the reason, say it is ready on stdout, and run until
//! SIGTERM or Ctrl-C, then close gracefully.

use scheduler::{Scheduler, SchedulerBuilder};

/// Starts `builder`; on failure prints `<name>: cannot start: <error>` and
/// exits with status 1.
#[allow(clippy::print_stderr)]
pub async fn start_or_exit(name: &str, builder: SchedulerBuilder) -> Scheduler {
    builder.start().await.unwrap_or_else(|e| {
        eprintln!("{name}: cannot start: {e}");
        std::process::exit(1);
    })
}

/// Prints `ready_line` (the parent test waits for it), waits for SIGTERM or
/// Ctrl-C, and closes the scheduler. Stdout is the protocol with the parent.
#[allow(clippy::print_stdout)]
pub async fn serve_until_terminated(scheduler: Scheduler, ready_line: &str) {
    println!("{ready_line}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    scheduler.close().await;
}

/// The ready line of the workers that report their pid as JSON.
pub fn ready_with_pid() -> String {
    serde_json::json!({"event": "ready", "pid": std::process::id()}).to_string()
}
