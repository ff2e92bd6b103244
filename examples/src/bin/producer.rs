//! A producer-only process: defers notifications and exits. It runs no worker
//! and needs none of the tasks' dependencies; any `worker` process runs them.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p scheduler-examples --bin producer -- --users 1000 --in-seconds 5
//! ```
#![allow(clippy::print_stdout)]

use chrono::{TimeDelta, Utc};
use clap::Parser;
use scheduler::Scheduler;
use scheduler_examples::{send_notification, Message};

#[derive(Debug, Parser)]
#[command(about = "Defer notifications for many users, then exit")]
struct Args {
    /// The shared Redis.
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    /// Key prefix shared with the workers.
    #[arg(long, default_value = "notifications")]
    namespace: String,
    /// How many users get a notification (one job each).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// How far ahead.
    #[arg(long, default_value_t = 5)]
    in_seconds: i64,
}

#[tokio::main]
async fn main() -> Result<(), scheduler::Error> {
    let args = Args::parse();
    let scheduler = Scheduler::builder(&args.redis_url)
        .namespace(&args.namespace)
        .producer_only()
        .start()
        .await?;
    let at = Utc::now() + TimeDelta::seconds(args.in_seconds);
    let message = Message {
        title: "Maintenance tonight".into(),
        content: "…".into(),
        action_module: "ops".into(),
    };
    // One job per user, 1,000 per round trip, each deduplicated by its id.
    let jobs = (0..args.users).map(|i| {
        send_notification::job(vec![format!("user-{i}")], message.clone())
            .id(format!("maintenance-{}-user-{i}", at.format("%Y%m%d")))
            .at(at)
    });
    let outcomes = scheduler.enqueue_many(jobs).await?;
    let created = outcomes.iter().filter(|o| o.is_enqueued()).count();
    println!(
        "{created} notifications planned for {at}, {} already planned",
        outcomes.len() - created
    );
    scheduler.close().await;
    Ok(())
}
