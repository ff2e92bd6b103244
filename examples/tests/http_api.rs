//! The example's HTTP API, driven over HTTP against the in-memory backend.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use scheduler::Scheduler;
use scheduler_examples::api::{FutureNotification, Planned, TEST_JOB_ID};
use scheduler_examples::{router, AppState, Message, NotificationManager};

struct App {
    base: String,
    manager: Arc<NotificationManager>,
    scheduler: Scheduler,
    http: reqwest::Client,
}

/// The process's Prometheus recorder, installed once for every app here.
fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| scheduler_examples::install_prometheus().unwrap())
        .clone()
}

async fn app(name: &str) -> App {
    let manager = Arc::new(NotificationManager::default());
    let scheduler = Scheduler::builder(format!("memory://{name}"))
        .provide_arc(Arc::clone(&manager))
        .start()
        .await
        .unwrap();
    let state = AppState {
        scheduler: scheduler.clone(),
        admin_token: "secret".into(),
        test_delay: Duration::from_millis(500),
        metrics: Some(prometheus()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    App {
        base,
        manager,
        scheduler,
        http: reqwest::Client::new(),
    }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The status the API reports for a job.
    async fn status(&self, job_id: &str) -> String {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/notification/jobs/{job_id}", self.base))
            .bearer_auth("secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["status"].as_str().unwrap_or_default().to_string()
    }
}

#[tokio::test]
async fn the_test_endpoint_refuses_non_admins_and_queues_nothing() {
    let app = app("auth").await;
    let url = format!("{}/notification/test/send/future", app.base);
    let missing = app.http.post(&url).send().await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(app.scheduler.pending_untyped().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(app.manager.deliveries().is_empty());
}

#[tokio::test]
async fn calling_the_test_endpoint_twice_delivers_once_after_the_delay() {
    let app = app("twice").await;
    let url = format!("{}/notification/test/send/future", app.base);
    let first: Planned = app
        .http
        .post(&url)
        .bearer_auth("secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first.outcome, "enqueued");
    let second: Planned = app
        .http
        .post(&url)
        .bearer_auth("secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second.outcome, "replaced");
    assert!(app.manager.deliveries().is_empty(), "not before its delay");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deliveries = app.manager.deliveries_of(TEST_JOB_ID);
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].delivered_at >= second.run_at);
}

#[tokio::test]
async fn a_deferred_notification_is_delivered_once_and_a_cancelled_one_never() {
    let app = app("defer-cancel").await;
    let body = |id: &str| FutureNotification {
        job_id: id.into(),
        user_ids: vec!["ada".into()],
        message: Message {
            title: id.into(),
            content: "c".into(),
            action_module: "m".into(),
        },
        at: Utc::now() + TimeDelta::milliseconds(400),
    };
    let url = format!("{}/notification/send/future", app.base);
    for id in ["kept", "dropped"] {
        let planned: Planned = app
            .http
            .post(&url)
            .bearer_auth("secret")
            .json(&body(id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(planned.outcome, "enqueued");
    }
    let cancel: serde_json::Value = app
        .http
        .delete(format!("{}/notification/jobs/dropped", app.base))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancel["outcome"], "removed");
    assert_eq!(app.status("kept").await, "deferred");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.manager.deliveries_of("kept").len(), 1);
    assert!(app.manager.deliveries_of("dropped").is_empty());
    assert_eq!(app.status("kept").await, "completed");
    assert_eq!(app.status("dropped").await, "cancelled");
}

#[tokio::test]
async fn bad_job_ids_are_refused_with_422() {
    let app = app("bad-id").await;
    let body = FutureNotification {
        job_id: "a{b}".into(),
        user_ids: vec![],
        message: Message {
            title: "t".into(),
            content: "c".into(),
            action_module: "m".into(),
        },
        at: Utc::now(),
    };
    let response = app
        .http
        .post(format!("{}/notification/send/future", app.base))
        .bearer_auth("secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
}

/// Asserts the response has `status` and is an error in the API's one shape,
/// `{"error": "<non-empty text>"}`; returns the text.
async fn assert_json_error(response: reqwest::Response, status: reqwest::StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)");
    assert_eq!(content_type, "application/json", "{status} is not JSON");
    let body: serde_json::Value = response.json().await.unwrap();
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 1, "only an error field: {body}");
    let text = object["error"].as_str().unwrap();
    assert!(!text.is_empty());
    text.to_string()
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let app = app("auth-before-body").await;
    let url = app.url("/notification/send/future");
    let missing = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let text = assert_json_error(missing, reqwest::StatusCode::UNAUTHORIZED).await;
    assert_eq!(text, "missing bearer token");
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("guess")
        .body("no content type either")
        .send()
        .await
        .unwrap();
    assert_json_error(wrong, reqwest::StatusCode::FORBIDDEN).await;
    assert!(app.scheduler.pending_untyped().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_endpoint_needs_the_token() {
    let app = app("auth-everywhere").await;
    let jobs = app.url("/notification/jobs/kept");
    let requests = [
        app.http.get(&jobs),
        app.http.delete(&jobs),
        app.http.post(app.url("/notification/send/future")),
        app.http.post(app.url("/notification/test/send/future")),
        app.http.get(app.url("/metrics")),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let challenge = response.headers().get(reqwest::header::WWW_AUTHENTICATE);
        assert_eq!(
            challenge.and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{} without a token",
            response.url()
        );
        assert_json_error(response, reqwest::StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn request_errors_are_json_like_the_apis_own() {
    let app = app("json-errors").await;
    let url = app.url("/notification/send/future");
    let syntax = app
        .http
        .post(&url)
        .bearer_auth("secret")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_json_error(syntax, reqwest::StatusCode::BAD_REQUEST).await;
    let missing_field = app
        .http
        .post(&url)
        .bearer_auth("secret")
        .json(&serde_json::json!({ "job_id": "x" }))
        .send()
        .await
        .unwrap();
    let text = assert_json_error(missing_field, reqwest::StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(text.contains("user_ids"), "names the field: {text}");
    let no_content_type = app
        .http
        .post(&url)
        .bearer_auth("secret")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_json_error(no_content_type, reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let bad_path = app
        .http
        .get(app.url("/notification/jobs/%FF"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_json_error(bad_path, reqwest::StatusCode::BAD_REQUEST).await;
    let bad_query = app
        .http
        .post(app.url("/notification/test/send/future?user_id=a&user_id=b"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_json_error(bad_query, reqwest::StatusCode::BAD_REQUEST).await;
    let no_route = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_json_error(no_route, reqwest::StatusCode::NOT_FOUND).await;
    let wrong_method = app.http.put(&url).send().await.unwrap();
    assert_json_error(wrong_method, reqwest::StatusCode::METHOD_NOT_ALLOWED).await;
    assert!(app.scheduler.pending_untyped().await.unwrap().is_empty());
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text_with_the_job_gauges() {
    let app = app("metrics-endpoint").await;
    let planned = app
        .http
        .post(app.url("/notification/test/send/future"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(planned.status(), reqwest::StatusCode::OK);
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    // This app's namespace is the default one, shared with the other apps of
    // this binary: only the presence of the series is certain here (exact
    // counts are checked by tests/tests/metrics.rs and the demo).
    assert!(
        text.lines()
            .any(|l| l.starts_with("scheduler_jobs_enqueued_total{")
                && l.contains("task=\"send_notification\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("scheduler_jobs{") && l.contains("state=\"deferred\"")),
        "{text}"
    );
    app.scheduler.close().await;
}

#[tokio::test]
async fn the_dashboard_is_mounted_behind_the_admin_check() {
    let app = app("dashboard").await;
    app.scheduler
        .enqueue_untyped(
            "send_notification",
            Some("reminder-7"),
            &serde_json::json!({"user_ids": ["ada"], "message": {"title": "t", "content": "c", "action_module": "m"}}),
            scheduler::When::At(Utc::now() + TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    let url = app.url("/admin/scheduler/upcoming");

    // A browser without credentials is asked for them.
    let missing = app.http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::UNAUTHORIZED);
    let challenge = missing.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert!(!missing.text().await.unwrap().contains("reminder-7"));
    for wrong in [
        app.http.get(&url).basic_auth("admin", Some("guess")),
        app.http.get(&url).bearer_auth("guess"),
    ] {
        let refused = wrong.send().await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
        assert!(!refused.text().await.unwrap().contains("reminder-7"));
    }
    // Actions are behind the check too: nothing is cancelled.
    let post = app
        .http
        .post(app.url("/admin/scheduler/actions/cancel"))
        .form(&[("csrf", "x"), ("id", "reminder-7"), ("generation", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The admin sees the page, by Basic (a browser) or bearer (a script).
    for allowed in [
        app.http.get(&url).basic_auth("admin", Some("secret")),
        app.http.get(&url).bearer_auth("secret"),
    ] {
        let page = allowed.send().await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("reminder-7"), "{html}");
        assert!(
            html.contains("href=\"/admin/scheduler/assets/dashboard.css\""),
            "{html}"
        );
    }
    assert_eq!(app.status("reminder-7").await, "deferred");
}
