//! A worker process for the fault-history test: runs the `hist` task and
//! appends every run's start and end to a JSON-lines file (one write per
//! line, so a SIGKILL loses at most the line being written). SIGTERM closes
//! the scheduler gracefully.
//!
//! Usage: `history-worker REDIS_URL NAMESPACE WORKER_NAME HISTORY_FILE`
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;

use scheduler::Scheduler;
use scheduler_tests::history::recorder::Recorder;
use scheduler_tests::history::task::{HistTask, WorkerName};
use scheduler_tests::history::workers::worker_config;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: history-worker REDIS_URL NAMESPACE WORKER_NAME HISTORY_FILE");
        std::process::exit(2);
    }
    scheduler_tests::init_tracing();
    let recorder = Recorder::to_file(Path::new(&args[4])).unwrap_or_else(|e| {
        eprintln!("history-worker: cannot create {}: {e}", args[4]);
        std::process::exit(1);
    });
    let scheduler = scheduler_tests::worker_process::start_or_exit(
        "history-worker",
        Scheduler::builder(args[1].clone())
            .namespace(args[2].clone())
            .command_timeout(std::time::Duration::from_secs(1))
            .register::<HistTask>()
            .provide(recorder)
            .provide(WorkerName(args[3].clone()))
            .worker(worker_config()),
    )
    .await;
    scheduler_tests::worker_process::serve_until_terminated(scheduler, "ready").await;
}
