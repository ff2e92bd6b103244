//! The notification service. `--demo` runs a scripted tour and exits 0 when
//! everything happened as planned.
//!
//! ```text
//! cargo run -p scheduler-examples --bin notifications -- --demo
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p scheduler-examples --bin notifications
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use scheduler::Scheduler;
use scheduler_examples::api::{FutureNotification, Planned, TEST_JOB_ID};
use scheduler_examples::{router, AppState, Message, NotificationManager};

#[derive(Debug, Parser)]
#[command(about = "The scheduler guide's notification service on scheduler + axum")]
struct Args {
    /// Run the scripted tour on a free port, print a timeline and exit.
    #[arg(long)]
    demo: bool,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Redis to use; without it the embedded in-memory backend is used.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// The admin's bearer token.
    #[arg(long, env = "ADMIN_TOKEN", default_value = "admin-secret")]
    admin_token: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,scheduler_examples=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (url, backend) = match &args.redis_url {
        Some(url) => (url.clone(), "redis"),
        None => (
            "memory://notifications".to_string(),
            "in-memory (set REDIS_URL to use Redis)",
        ),
    };
    println!("backend: {backend}");
    let manager = Arc::new(NotificationManager::default());
    // The worker runs inside this process's runtime, as the guide's
    // `asyncio.create_task(worker.async_run())`; signals stay ours.
    let scheduler = Scheduler::builder(&url)
        .namespace(if args.demo {
            format!("demo-{}", std::process::id())
        } else {
            "notifications".into()
        })
        .provide_arc(Arc::clone(&manager))
        .start()
        .await?;
    let state = AppState {
        scheduler: scheduler.clone(),
        admin_token: args.admin_token.clone(),
        test_delay: if args.demo {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        },
    };
    let listen = if args.demo {
        "127.0.0.1:0"
    } else {
        args.listen.as_str()
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let outcome = if args.demo {
        demo(&format!("http://{addr}"), &args.admin_token, &manager).await
    } else {
        scheduler_examples::shutdown_signal().await;
        println!("shutting down");
        Ok(())
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    scheduler.close().await;
    outcome
}

struct Timeline {
    start: DateTime<Utc>,
    lines: Vec<(DateTime<Utc>, String)>,
}

impl Timeline {
    fn note(&mut self, text: impl Into<String>) {
        self.lines.push((Utc::now(), text.into()));
    }

    fn print(&mut self, manager: &NotificationManager) {
        for d in manager.deliveries() {
            let late = (d.delivered_at - d.planned_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0;
            self.lines.push((
                d.delivered_at,
                format!(
                    "delivered {:?} to {} (job {}), {late:.1} ms after its planned time",
                    d.title, d.user_id, d.job_id
                ),
            ));
        }
        self.lines.sort_by_key(|(t, _)| *t);
        println!("\ntimeline (ms since start):");
        for (t, text) in &self.lines {
            println!("  {:>6} ms  {text}", (*t - self.start).num_milliseconds());
        }
    }
}

/// The scripted tour: every step is checked; any surprise fails the demo.
async fn demo(
    base: &str,
    token: &str,
    manager: &NotificationManager,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::new();
    let mut timeline = Timeline {
        start: Utc::now(),
        lines: Vec::new(),
    };
    let mut problems: Vec<String> = Vec::new();

    // 1. A wrong token is refused and queues nothing.
    let refused = http
        .post(format!("{base}/notification/test/send/future"))
        .bearer_auth("not-the-admin")
        .send()
        .await?;
    timeline.note(format!(
        "test notification with a wrong token: HTTP {}",
        refused.status().as_u16()
    ));
    if refused.status() != reqwest::StatusCode::FORBIDDEN {
        problems.push(format!("wrong token got {}", refused.status()));
    }

    // 2. The admin's test notification, 2 s ahead; called twice: re-planned, not duplicated.
    for call in 1..=2 {
        let planned: Planned = http
            .post(format!("{base}/notification/test/send/future"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        timeline.note(format!(
            "test notification call {call}: {} for {}",
            planned.outcome,
            planned.run_at.format("%H:%M:%S%.3f")
        ));
        let expected = if call == 1 { "enqueued" } else { "replaced" };
        if planned.outcome != expected {
            problems.push(format!(
                "call {call} of the test endpoint was {}, expected {expected}",
                planned.outcome
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // 3. A notification planned for 1.5 s ahead, cancelled before it fires.
    let defer = |job_id: &str, title: &str, ms: i64| FutureNotification {
        job_id: job_id.into(),
        user_ids: vec!["ada".into(), "bob".into()],
        message: Message {
            title: title.into(),
            content: "…".into(),
            action_module: "demo".into(),
        },
        at: Utc::now() + TimeDelta::milliseconds(ms),
    };
    let planned: Planned = http
        .post(format!("{base}/notification/send/future"))
        .json(&defer("reminder-cancelled", "Cancelled reminder", 1500))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    timeline.note(format!(
        "reminder-cancelled: {} for {}",
        planned.outcome,
        planned.run_at.format("%H:%M:%S%.3f")
    ));
    let cancelled: serde_json::Value = http
        .delete(format!("{base}/notification/jobs/reminder-cancelled"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    timeline.note(format!(
        "reminder-cancelled: cancel → {}",
        cancelled["outcome"]
    ));
    if cancelled["outcome"] != "removed" {
        problems.push(format!("cancel answered {}", cancelled["outcome"]));
    }

    // 4. One more, and its status while deferred.
    let planned: Planned = http
        .post(format!("{base}/notification/send/future"))
        .json(&defer("reminder-kept", "Kept reminder", 2500))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    timeline.note(format!(
        "reminder-kept: {} for {}",
        planned.outcome,
        planned.run_at.format("%H:%M:%S%.3f")
    ));
    let status: serde_json::Value = http
        .get(format!("{base}/notification/jobs/reminder-kept"))
        .send()
        .await?
        .json()
        .await?;
    timeline.note(format!("reminder-kept: status {}", status["status"]));
    if status["status"] != "deferred" {
        problems.push(format!(
            "reminder-kept was {} before its time",
            status["status"]
        ));
    }

    // 5. Wait for the deliveries, then check everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (manager.deliveries_of(TEST_JOB_ID).is_empty()
        || manager.deliveries_of("reminder-kept").len() < 2)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // anything extra would show up by now
    let status: serde_json::Value = http
        .get(format!("{base}/notification/jobs/reminder-kept"))
        .send()
        .await?
        .json()
        .await?;
    timeline.note(format!("reminder-kept: status {}", status["status"]));
    if status["status"] != "completed" {
        problems.push(format!("reminder-kept ended {}", status["status"]));
    }
    let test_deliveries = manager.deliveries_of(TEST_JOB_ID).len();
    if test_deliveries != 1 {
        problems.push(format!(
            "the test notification was delivered {test_deliveries} times, expected once"
        ));
    }
    if !manager.deliveries_of("reminder-cancelled").is_empty() {
        problems.push("the cancelled reminder was delivered".into());
    }
    if manager.deliveries_of("reminder-kept").len() != 2 {
        problems.push("reminder-kept did not reach both users".into());
    }
    for d in manager.deliveries() {
        if d.delivered_at < d.planned_at {
            problems.push(format!("{} was delivered before its time", d.job_id));
        }
    }
    timeline.print(manager);
    if problems.is_empty() {
        println!(
            "\ndemo OK: re-planned not duplicated, cancelled never sent, every delivery on time"
        );
        Ok(())
    } else {
        for p in &problems {
            println!("PROBLEM: {p}");
        }
        Err(format!("{} problem(s) in the demo", problems.len()).into())
    }
}
