//! The dashboard as an operator uses it, in a real headless Chromium
//! (Debian's `chromium` and `chromium-driver`, driven through chromedriver):
//! the overview with its chart, a deferred job found on the timeline and
//! cancelled by clicking (then gone from Redis), a dead-lettered job retried
//! (then run to completion) and another deleted, a running job's progress
//! and abort, a schedule paused, a job's detail page; a read-only dashboard
//! that shows no actions and refuses one posted anyway, and a form without
//! the CSRF token refused. Each page is saved as a screenshot under
//! `target/tmp/dashboard-screenshots/`.
//!
//! chromedriver is found on `PATH` (or at `$CHROMEDRIVER`); `./scripts/test`
//! installs it on a fresh Debian machine.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use scheduler::dashboard::Dashboard;
use scheduler::{Dep, JobContext, JobStatus, Scheduler, TaskError, WorkerConfig};
use scheduler_tests::namespace;
use scheduler_tests::redis_server::{free_port, RedisServer};
use scheduler_tests::setup::wait_status;
use serde_json::json;

const LONG: Duration = Duration::from_secs(20);

/// Whether the report's mail server accepts it (shut at first).
#[derive(Default)]
struct MailServer(AtomicBool);

/// Fails for good while the mail server is shut: dead-lettered at once.
#[scheduler::task(max_attempts = 1)]
async fn send_report(to: String, mail: Dep<MailServer>) -> Result<(), TaskError> {
    if mail.0.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(TaskError::permanent(format!(
            "the mail server refused the report to {to}"
        )))
    }
}

#[scheduler::task]
async fn send_reminder(user: String, text: String) -> Result<(), String> {
    let _ = (user, text);
    Ok(())
}

/// Reports a quarter done, then works for a minute (until aborted).
#[scheduler::task]
async fn export_rows(rows: u64, ctx: JobContext) -> Result<(), TaskError> {
    ctx.progress(json!({"done": rows / 4, "total": rows}))
        .await?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

#[scheduler::task(cron = "0 9 * * *", tz = "Europe/Paris")]
async fn daily_digest() -> Result<(), String> {
    Ok(())
}

/// chromedriver and the browser session it runs.
struct Browser {
    driver: Child,
    client: Client,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    async fn start() -> Self {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {program:?} ({e}): install Debian's chromium and chromium-driver \
                     (apt-get install -y chromium chromium-driver; ./scripts/test does it)"
                )
            });
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--lang=en-US",
        ];
        let mut chrome = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome);
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let shots =
                        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
                    let _ = std::fs::remove_dir_all(&shots);
                    std::fs::create_dir_all(&shots).unwrap();
                    return Browser {
                        driver,
                        client,
                        shots,
                        taken: 0,
                    };
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last_error}");
    }

    /// Saves a screenshot of the page as `NN-name.png`.
    async fn shot(&mut self, name: &str) {
        self.taken += 1;
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).unwrap();
        println!("screenshot {}", path.display());
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(LONG)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css:?} on the page: {e}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The text of the element `css` names. Found again when the page was
    /// replaced between finding and reading it (a redirect after an action
    /// still landing): `StaleElementReference`, seen once in CI.
    async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reading {css:?}: {e}"),
            }
        }
        panic!("{css:?} went stale 20 times in a row")
    }

    /// The page's notice once it starts with `expected` (20 s at most; the
    /// last one seen otherwise): after an action the browser may still show
    /// the previous page, with the previous notice, for a moment.
    async fn notice(&self, expected: &str) -> String {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let seen = match self.client.find(Locator::Css("p.notice")).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if seen.starts_with(expected) || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks a button that asks first, and says yes.
    async fn click_and_confirm(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
        let question = self.client.get_alert_text().await.unwrap();
        assert!(question.contains('?'), "{question}");
        self.client.accept_alert().await.unwrap();
    }

    /// Posts a form built on the page, as a forged or stale page would.
    async fn post_form(&self, action: &str, fields: serde_json::Value) {
        self.client
            .execute(
                "const [action, fields] = arguments;
                 const form = document.createElement('form');
                 form.method = 'post';
                 form.action = action;
                 for (const [name, value] of Object.entries(fields)) {
                   const input = document.createElement('input');
                   input.type = 'hidden'; input.name = name; input.value = value;
                   form.appendChild(input);
                 }
                 document.body.appendChild(form);
                 HTMLFormElement.prototype.submit.call(form);",
                vec![json!(action), fields],
            )
            .await
            .unwrap();
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Whether `id` is anywhere in the namespace's Redis indexes of pending,
/// running or dead-lettered jobs.
fn in_redis(redis: &RedisServer, ns: &str, index: &str, id: &str) -> bool {
    redis
        .cli(&["HEXISTS", &format!("{{{ns}}}:{index}"), id])
        .is_some_and(|out| out.trim() == "1")
}

async fn status(s: &Scheduler, id: &str) -> JobStatus {
    s.status(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_inspects_and_steers_jobs_in_a_browser() {
    let redis = RedisServer::start();
    let ns = namespace("dashboard");
    let mail = MailServer::default();
    let s = Scheduler::builder(redis.url())
        .namespace(&ns)
        .register::<send_report>()
        .register::<send_reminder>()
        .register::<export_rows>()
        .register::<daily_digest>()
        .provide(mail)
        .worker(WorkerConfig {
            concurrency: 4,
            ..WorkerConfig::default()
        })
        .start()
        .await
        .unwrap();

    // Work for the chart, three deferred reminders, two dead letters and a
    // running export.
    for n in 0..6 {
        s.enqueue(send_reminder::job(format!("u{n}"), "done".into()).id(format!("done-{n}")))
            .await
            .unwrap();
    }
    for (id, minutes) in [("reminder-1", 30), ("reminder-2", 45), ("reminder-3", 90)] {
        s.enqueue(
            send_reminder::job("ada".into(), format!("stand up ({id})"))
                .id(id)
                .after(Duration::from_secs(minutes * 60)),
        )
        .await
        .unwrap();
    }
    for (id, to) in [
        ("report-1", "ops@example.com"),
        ("report-2", "cto@example.com"),
    ] {
        s.enqueue(send_report::job(to.into()).id(id)).await.unwrap();
        s.wait(id, LONG).await.unwrap();
    }
    s.enqueue(export_rows::job(1000).id("export-1"))
        .await
        .unwrap();
    let mut progress_seen = false;
    for _ in 0..200 {
        if s.info("export-1")
            .await
            .unwrap()
            .and_then(|i| i.progress)
            .is_some()
        {
            progress_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(progress_seen, "the export reports its progress");
    // The worker adds its activity counts every few seconds.
    let mut counted = false;
    for _ in 0..100 {
        let minutes = s.activity(5).await.unwrap();
        if minutes.iter().map(|m| m.completed).sum::<u64>() >= 6 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted, "{:?}", s.activity(5).await.unwrap());

    let app = Router::new()
        .nest("/admin/scheduler", scheduler::dashboard::router(s.clone()))
        .nest(
            "/audit/scheduler",
            Dashboard::new(s.clone()).read_only().into_router(),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let admin = format!("{site}/admin/scheduler");

    let mut b = Browser::start().await;

    // The overview: counts, the chart of the last hour.
    b.goto(&admin).await;
    // Three reminders and the digest's next tick.
    assert_eq!(b.text("a.card[data-count=deferred] .value").await, "4");
    assert_eq!(b.text("a.card[data-count=running] .value").await, "1");
    assert_eq!(b.text("a.card[data-count=dead-lettered] .value").await, "2");
    // Per queue: every job here is in `default`, served by this process's worker.
    assert_eq!(
        b.text("tr[data-queue=default] td:nth-child(2)").await,
        "4",
        "deferred in default"
    );
    assert_eq!(
        b.text("tr[data-queue=default] td:nth-child(5)").await,
        "1",
        "workers"
    );
    assert!(b.count("svg.throughput rect.completed").await >= 1);
    assert!(b.count("svg.lateness circle.p50").await >= 1);
    // Nothing is loaded from anywhere but the dashboard (it works offline).
    let loaded = b
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .unwrap();
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(
        loaded.len() >= 2,
        "the style sheet and the script: {loaded:?}"
    );
    assert!(
        loaded
            .iter()
            .all(|url| url.starts_with(&format!("{admin}/assets/"))),
        "{loaded:?}"
    );
    b.shot("overview").await;

    // Upcoming: reminder-1 on the timeline; cancel it by clicking.
    b.find("header nav a[href$='/upcoming']")
        .await
        .click()
        .await
        .unwrap();
    b.find("svg.timeline a[data-job='reminder-1']").await;
    assert_eq!(b.count("table.jobs tr[data-job]").await, 4);
    b.shot("upcoming").await;
    assert!(in_redis(&redis, &ns, "pending", "reminder-1"));
    // The cancel form's fields, to send it again later.
    let form = "tr[data-job='reminder-1'] form.action[action$='/actions/cancel']";
    let mut fields = Vec::new();
    for name in ["csrf", "generation"] {
        let input = b.find(&format!("{form} input[name={name}]")).await;
        fields.push(input.attr("value").await.unwrap().unwrap());
    }
    let (csrf, shown_generation) = (fields[0].clone(), fields[1].clone());
    b.click_and_confirm("tr[data-job='reminder-1'] button.cancel")
        .await;
    let notice = b.notice("reminder-1 was cancelled").await;
    assert_eq!(notice, "reminder-1 was cancelled: it will not run.");
    assert_eq!(b.count("tr[data-job='reminder-1']").await, 0);
    assert_eq!(b.count("table.jobs tr[data-job]").await, 3);
    assert!(
        !in_redis(&redis, &ns, "pending", "reminder-1"),
        "gone from Redis"
    );
    assert_eq!(
        redis
            .cli(&["ZSCORE", &format!("{{{ns}}}:due"), "reminder-1"])
            .unwrap()
            .trim(),
        ""
    );
    assert_eq!(status(&s, "reminder-1").await, JobStatus::Cancelled);
    b.shot("upcoming-after-cancel").await;

    // The id is used again; the old form, sent again with its valid token,
    // names the cancelled generation and leaves the new job alone.
    s.enqueue(
        send_reminder::job("ada".into(), "again".into())
            .id("reminder-1")
            .after(Duration::from_secs(20 * 60)),
    )
    .await
    .unwrap();
    b.post_form(
        &format!("{admin}/actions/cancel"),
        json!({"csrf": csrf, "id": "reminder-1", "generation": shown_generation, "back": "/upcoming"}),
    )
    .await;
    let notice = b.notice("reminder-1 had already").await;
    // The generation shown ended cancelled: that is what the notice says.
    assert_eq!(notice, "reminder-1 had already finished: nothing changed.");
    assert!(matches!(
        status(&s, "reminder-1").await,
        JobStatus::Deferred { .. }
    ));
    assert!(in_redis(&redis, &ns, "pending", "reminder-1"));
    // So is *run now* from the old page: the new job keeps its time.
    b.post_form(
        &format!("{admin}/actions/run-now"),
        json!({"csrf": csrf, "id": "reminder-1", "generation": shown_generation, "back": "/upcoming"}),
    )
    .await;
    let notice = b.notice("reminder-1 is no longer").await;
    assert!(
        notice.starts_with("reminder-1 is no longer the job this page showed"),
        "{notice}"
    );
    assert!(matches!(
        status(&s, "reminder-1").await,
        JobStatus::Deferred { .. }
    ));
    s.cancel("reminder-1").await.unwrap();

    // Failed: the reason; retry one once the mail server is back, delete the other.
    b.find("header nav a[href$='/failed']")
        .await
        .click()
        .await
        .unwrap();
    let reason = b.text("tr[data-job='report-1'] td.reason").await;
    assert_eq!(
        reason,
        "the mail server refused the report to ops@example.com"
    );
    b.shot("failed").await;
    s.dependencies().insert(MailServer(AtomicBool::new(true)));
    b.find("tr[data-job='report-1'] button.retry")
        .await
        .click()
        .await
        .unwrap();
    assert_eq!(
        b.notice("report-1").await,
        "report-1 is back in the queue with fresh attempts."
    );
    s.wait("report-1", LONG).await.unwrap();
    assert_eq!(status(&s, "report-1").await, JobStatus::Completed, "it ran");
    assert!(!in_redis(&redis, &ns, "dead", "report-1"));
    b.click_and_confirm("tr[data-job='report-2'] button.delete")
        .await;
    assert_eq!(
        b.notice("report-2").await,
        "report-2 was deleted from the dead letters."
    );
    assert!(
        !in_redis(&redis, &ns, "dead", "report-2"),
        "gone from Redis"
    );
    assert_eq!(b.count("table.jobs tr[data-job]").await, 0);
    b.shot("failed-after-retry-and-delete").await;

    // Running: the export's progress bar; abort it.
    b.find("header nav a[href$='/running']")
        .await
        .click()
        .await
        .unwrap();
    let bar = b.find("tr[data-job='export-1'] progress").await;
    assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("0.250"));
    b.shot("running").await;
    b.click_and_confirm("tr[data-job='export-1'] button.cancel")
        .await;
    let notice = b.notice("export-1 is being aborted").await;
    assert!(notice.starts_with("export-1 is being aborted"), "{notice}");
    let ended = wait_status(&s, "export-1", |st| *st == JobStatus::Cancelled).await;
    assert_eq!(ended, JobStatus::Cancelled);
    assert!(!in_redis(&redis, &ns, "active", "export-1"));

    // Schedules: the daily digest; pause it.
    b.find("header nav a[href$='/schedules']")
        .await
        .click()
        .await
        .unwrap();
    b.find("tr[data-schedule='daily_digest']").await;
    b.click_and_confirm("tr[data-schedule='daily_digest'] button.pause")
        .await;
    b.find("tr[data-schedule='daily_digest'] span.badge.paused")
        .await;
    let digest = s.schedules().await.unwrap();
    assert!(digest.iter().any(|d| d.name == "daily_digest" && d.paused));
    b.shot("schedules").await;

    // A job's detail, from the upcoming list.
    b.find("header nav a[href$='/upcoming']")
        .await
        .click()
        .await
        .unwrap();
    b.find("tr[data-job='reminder-2'] a.job")
        .await
        .click()
        .await
        .unwrap();
    let detail = b.text("dl.detail").await;
    assert!(detail.contains("send_reminder"), "{detail}");
    let args = b.text("pre.json").await;
    assert!(args.contains("\"user\": \"ada\""), "{args}");
    b.shot("job-detail").await;

    // A form without the page's CSRF token is refused; nothing changes.
    let generation = s.info("reminder-2").await.unwrap().unwrap().generation;
    b.post_form(
        &format!("{admin}/actions/cancel"),
        json!({"csrf": "0".repeat(32), "id": "reminder-2", "generation": generation.to_string()}),
    )
    .await;
    let refused = b.text("p.error").await;
    assert!(
        refused.contains("security token did not match"),
        "{refused}"
    );
    assert!(matches!(
        status(&s, "reminder-2").await,
        JobStatus::Deferred { .. }
    ));
    // Errors show inside the dashboard, with its navigation.
    b.find("header.top nav").await;
    b.shot("csrf-refused").await;
    b.goto(&format!("{admin}/jobs?state=nope")).await;
    assert_eq!(b.text("p.error").await, "no state \"nope\"");
    b.find("header.top nav").await;

    // Read-only: no actions shown, and one posted anyway is refused.
    b.goto(&format!("{site}/audit/scheduler/upcoming")).await;
    b.find("span.badge.readonly").await;
    // Two reminders: pausing the digest removed its tick.
    assert_eq!(b.count("table.jobs tr[data-job]").await, 2);
    assert_eq!(b.count("form.action, button.cancel").await, 0);
    b.shot("read-only-upcoming").await;
    b.post_form(
        &format!("{site}/audit/scheduler/actions/cancel"),
        json!({"csrf": "0".repeat(32), "id": "reminder-2", "generation": generation.to_string()}),
    )
    .await;
    let refused = b.text("p.error").await;
    assert!(refused.contains("read-only"), "{refused}");
    assert!(matches!(
        status(&s, "reminder-2").await,
        JobStatus::Deferred { .. }
    ));
    assert!(in_redis(&redis, &ns, "pending", "reminder-2"));
    b.shot("read-only-refused").await;

    b.close().await;
    s.close().await;
}
