//! The notification service. `--demo` runs a scripted tour and exits 0 when
//! everything happened as planned.
//!
//! ```text
//! cargo run -p scheduler-examples --bin notifications -- --demo
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p scheduler-examples --bin notifications
//! # every endpoint needs the admin's token (--admin-token / ADMIN_TOKEN):
//! curl -H 'Authorization: Bearer admin-secret' http://127.0.0.1:3000/notification/jobs/reminder-42
//! # the scheduler's dashboard, in a browser (user name: anything; password: the token):
//! #   http://127.0.0.1:3000/admin/scheduler/
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
    let metrics = scheduler_examples::install_prometheus()?;
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
        metrics: Some(metrics),
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

/// The example's API, as a client sees it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

impl Api {
    async fn test_notification(&self, token: &str) -> DemoResult<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}/notification/test/send/future", self.base))
            .bearer_auth(token)
            .send()
            .await?)
    }

    async fn defer(&self, job_id: &str, title: &str, in_ms: i64) -> DemoResult<Planned> {
        let body = FutureNotification {
            job_id: job_id.into(),
            user_ids: vec!["ada".into(), "bob".into()],
            message: Message {
                title: title.into(),
                content: "…".into(),
                action_module: "demo".into(),
            },
            at: Utc::now() + TimeDelta::milliseconds(in_ms),
        };
        let response = self
            .http
            .post(format!("{}/notification/send/future", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        Ok(response.error_for_status()?.json().await?)
    }

    async fn cancel(&self, job_id: &str) -> DemoResult<String> {
        let response = self
            .http
            .delete(format!("{}/notification/jobs/{job_id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let body: serde_json::Value = response.error_for_status()?.json().await?;
        Ok(body["outcome"].as_str().unwrap_or_default().to_string())
    }

    /// `GET /metrics`: the Prometheus text.
    async fn metrics(&self) -> DemoResult<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(response.error_for_status()?.text().await?)
    }

    async fn status_code_without_token(&self, job_id: &str) -> DemoResult<reqwest::StatusCode> {
        Ok(self
            .http
            .get(format!("{}/notification/jobs/{job_id}", self.base))
            .send()
            .await?
            .status())
    }

    async fn status(&self, job_id: &str) -> DemoResult<String> {
        let response = self
            .http
            .get(format!("{}/notification/jobs/{job_id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let body: serde_json::Value = response.error_for_status()?.json().await?;
        Ok(body["status"].as_str().unwrap_or_default().to_string())
    }
}

fn planned_line(job: &str, planned: &Planned) -> String {
    format!(
        "{job}: {} for {}",
        planned.outcome,
        planned.run_at.format("%H:%M:%S%.3f")
    )
}

/// The scripted tour: every step is checked; any surprise fails the demo.
async fn demo(base: &str, token: &str, manager: &NotificationManager) -> DemoResult<()> {
    let api = Api {
        http: reqwest::Client::new(),
        base: base.to_string(),
        token: token.to_string(),
    };
    let mut timeline = Timeline {
        start: Utc::now(),
        lines: Vec::new(),
    };
    let mut problems: Vec<String> = Vec::new();
    let mut expect = |what: &str, got: &str, want: &str| {
        if got != want {
            problems.push(format!("{what}: got {got}, expected {want}"));
        }
    };

    // 1. A wrong token is refused and queues nothing; no token shows nothing.
    let refused = api.test_notification("not-the-admin").await?.status();
    timeline.note(format!(
        "test notification with a wrong token: HTTP {}",
        refused.as_u16()
    ));
    expect("wrong token", refused.as_str(), "403");
    let anonymous = api.status_code_without_token("reminder-kept").await?;
    timeline.note(format!(
        "job status without a token: HTTP {}",
        anonymous.as_u16()
    ));
    expect("status without a token", anonymous.as_str(), "401");

    // 2. The admin's test notification, 2 s ahead; called twice: re-planned, not duplicated.
    for (call, want) in [(1, "enqueued"), (2, "replaced")] {
        let planned: Planned = api
            .test_notification(&api.token)
            .await?
            .error_for_status()?
            .json()
            .await?;
        timeline.note(planned_line(
            &format!("test notification call {call}"),
            &planned,
        ));
        expect(
            &format!("test endpoint call {call}"),
            &planned.outcome,
            want,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // 3. A notification planned 1.5 s ahead, cancelled before it fires.
    let planned = api
        .defer("reminder-cancelled", "Cancelled reminder", 1500)
        .await?;
    timeline.note(planned_line("reminder-cancelled", &planned));
    let cancelled = api.cancel("reminder-cancelled").await?;
    timeline.note(format!("reminder-cancelled: cancel → {cancelled}"));
    expect("cancel", &cancelled, "removed");

    // 4. One more, and its status while deferred.
    let planned = api.defer("reminder-kept", "Kept reminder", 2500).await?;
    timeline.note(planned_line("reminder-kept", &planned));
    let status = api.status("reminder-kept").await?;
    timeline.note(format!("reminder-kept: status {status}"));
    expect("reminder-kept before its time", &status, "deferred");

    // 5. Wait for the deliveries, then check everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (manager.deliveries_of(TEST_JOB_ID).is_empty()
        || manager.deliveries_of("reminder-kept").len() < 2)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // anything extra would show up by now
    let status = api.status("reminder-kept").await?;
    timeline.note(format!("reminder-kept: status {status}"));
    expect("reminder-kept at the end", &status, "completed");
    let count = |job: &str| manager.deliveries_of(job).len().to_string();
    expect(
        "deliveries of the test notification",
        &count(TEST_JOB_ID),
        "1",
    );
    expect(
        "deliveries of the cancelled reminder",
        &count("reminder-cancelled"),
        "0",
    );
    expect("deliveries of reminder-kept", &count("reminder-kept"), "2");
    // 6. The metrics an operator would scrape (GET /metrics, Prometheus text).
    let metrics = api.metrics().await?;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains("task=\"send_notification\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("absent")
            .to_string()
    };
    expect(
        "metric completed",
        &value("scheduler_jobs_completed_total"),
        "2",
    );
    expect(
        "metric cancelled",
        &value("scheduler_jobs_cancelled_total"),
        "1",
    );
    expect(
        "metric replaced",
        &value("scheduler_jobs_replaced_total"),
        "1",
    );
    expect(
        "metric started",
        &value("scheduler_job_lateness_seconds_count"),
        "2",
    );

    for d in manager.deliveries() {
        if d.delivered_at < d.planned_at {
            problems.push(format!("{} was delivered before its time", d.job_id));
        }
    }
    timeline.print(manager);
    println!("\nmetrics (GET /metrics, a few lines):");
    for line in metrics.lines().filter(|l| {
        l.starts_with("scheduler_jobs_")
            || l.starts_with("scheduler_jobs{")
            || l.starts_with("scheduler_job_lateness_seconds_count")
            || l.starts_with("scheduler_job_lateness_seconds_sum")
    }) {
        println!("  {line}");
    }

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
