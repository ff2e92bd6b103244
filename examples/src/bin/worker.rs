//! A dedicated worker process: runs the notification tasks enqueued by any
//! producer on the same Redis. Start as many as you like.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p scheduler-examples --bin worker -- --concurrency 20
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use clap::Parser;
use scheduler::{Scheduler, WorkerConfig};
use scheduler_examples::NotificationManager;

#[derive(Debug, Parser)]
#[command(about = "A worker process for the notification tasks")]
struct Args {
    /// The shared Redis.
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    /// Key prefix shared with the producers.
    #[arg(long, default_value = "notifications")]
    namespace: String,
    /// Jobs run at once in this process.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> Result<(), scheduler::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let scheduler = Scheduler::builder(&args.redis_url)
        .namespace(&args.namespace)
        .provide_arc(Arc::new(NotificationManager::default()))
        .worker(WorkerConfig {
            concurrency: args.concurrency,
            ..WorkerConfig::default()
        })
        .start()
        .await?;
    println!("worker running tasks: {}", scheduler.registry().describe());
    scheduler_examples::shutdown_signal().await;
    scheduler.close().await;
    Ok(())
}
