//! The dashboard's pages (`GET`), each built from the inspection API.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{html, Markup};
use serde::Deserialize;

use super::chart;
use super::layout::{encode_path, job_link, json_preview, status_badge, when, Ctx, Nav};
use super::PageError;
use crate::{FinishedState, Health, JobInfo, JobQuery, JobStatus, ListState};

/// The query of a listing page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListParams {
    state: Option<String>,
    task: Option<String>,
    queue: Option<String>,
    outcome: Option<String>,
    after: Option<String>,
}

impl ListParams {
    /// The query for `state` (the page's own, or the one asked for).
    fn query(&self, state: ListState, limit: usize) -> Result<JobQuery, PageError> {
        let mut query = JobQuery::new(state).limit(limit);
        if let Some(task) = self.task.as_deref().filter(|t| !t.is_empty()) {
            query = query.task(task);
        }
        if let Some(queue) = self.queue.as_deref().filter(|q| !q.is_empty()) {
            query = query.queue(queue);
        }
        if let Some(outcome) = self.outcome.as_deref().filter(|o| !o.is_empty()) {
            let outcome = FinishedState::parse(outcome).ok_or_else(|| {
                PageError::new(StatusCode::BAD_REQUEST, format!("no outcome {outcome:?}"))
            })?;
            query = query.outcome(outcome);
        }
        if let Some(after) = self.after.as_deref().filter(|a| !a.is_empty()) {
            query = query.after(after);
        }
        Ok(query)
    }

    /// The link to the page after `cursor`, keeping the filters.
    fn next_href(&self, ctx: &Ctx, path: &str, cursor: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("after", cursor);
        for (name, value) in [
            ("state", &self.state),
            ("task", &self.task),
            ("queue", &self.queue),
            ("outcome", &self.outcome),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(name, v);
            }
        }
        format!("{}?{}", ctx.href(path), query.finish())
    }
}

/// The task filter of a listing page.
fn task_filter(ctx: &Ctx, path: &str, params: &ListParams, extra: Markup) -> Markup {
    html! {
        form.filter method="get" action=(ctx.href(path)) {
            (extra)
            label { "Task " input type="text" name="task" value=[params.task.as_deref()] placeholder="any"; }
            label { "Queue " input type="text" name="queue" value=[params.queue.as_deref()] placeholder="any"; }
            button.btn type="submit" { "Filter" }
        }
    }
}

/// The "next page" link, when there is one.
fn pager(ctx: &Ctx, path: &str, params: &ListParams, next: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = next {
            p.pager { a.next href=(params.next_href(ctx, path, cursor)) { "Next page →" } }
        }
    }
}

/// `GET /`: counts, health, the last hour's chart, the next jobs.
pub(crate) async fn overview(ctx: Ctx) -> Result<Response, PageError> {
    let s = &ctx.scheduler;
    let counts = s.counts().await?;
    let queues = s.queues().await?;
    let activity = s.activity(60).await?;
    let next = s.list(&JobQuery::new(ListState::Deferred).limit(5)).await?;
    let totals = chart::totals(&activity);
    let body = html! {
        section.cards {
            @for (label, value, path) in [
                ("Deferred", counts.deferred, "/upcoming"),
                ("Queued", counts.queued, "/jobs?state=queued"),
                ("Running", counts.running, "/running"),
                ("Dead-lettered", counts.dead_lettered, "/failed"),
            ] {
                a.card href=(ctx.href(path)) data-count=(label.to_lowercase()) {
                    span.value { (value) }
                    span.label { (label) }
                }
            }
        }
        section {
            h2 { "Per queue" }
            table.queues {
                thead { tr { th { "Queue" } th { "Deferred" } th { "Queued" } th { "Waiting" } th { "Workers" } } }
                tbody {
                    @for q in &queues {
                        tr data-queue=(q.name) {
                            td { a href=(ctx.href(&format!("/jobs?state=queued&queue={}", encode_path(&q.name)))) { (q.name) } }
                            td { (q.deferred) } td { (q.queued) } td { (q.waiting) }
                            // Jobs and no worker: nothing runs them.
                            @if q.workers == 0 && q.queued + q.waiting > 0 {
                                td.bad title="No live worker serves this queue" { "0" }
                            } @else {
                                td { (q.workers) }
                            }
                        }
                    }
                }
            }
            p.muted { "Waiting: due, but held by a concurrency or rate limit, or by a worker that lacks the task. Workers: live processes serving the queue (announced every 5 s)." }
        }
        section {
            h2 { "Health" }
            @match s.health() {
                Health::Healthy => p.health.ok { "Healthy: the last Redis calls worked." },
                Health::Degraded { reason, .. } => p.health.bad { "Degraded: " (reason) },
            }
        }
        section {
            h2 { "Last hour" }
            p.totals {
                "Started " strong { (totals.started) } " · completed " strong { (totals.completed) }
                " · failed " strong { (totals.failed) } " · retried " strong { (totals.retried) }
                " · lateness p50 " strong { (chart::lateness_label(totals.lateness_quantile(0.5))) }
                " · p99 " strong { (chart::lateness_label(totals.lateness_quantile(0.99))) }
            }
            figure.chart {
                (chart::throughput_svg(&activity))
                figcaption { "Attempts per minute: completed, retried and failed (by the workers' counts, added every few seconds)." }
            }
            figure.chart {
                (chart::lateness_svg(&activity))
                figcaption { "Lateness per minute, p50 and p99: how long after its due time each attempt started (bucket upper bounds)." }
            }
        }
        section {
            h2 { "Next up" }
            (upcoming_table(&ctx, &next.jobs))
            p { a href=(ctx.href("/upcoming")) { "All upcoming jobs →" } }
        }
    };
    Ok(ctx.page(Nav::Overview, "Overview", body))
}

/// `GET /upcoming`: deferred jobs on a timeline and in a table.
pub(crate) async fn upcoming(
    ctx: Ctx,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let page = ctx
        .scheduler
        .list(&params.query(ListState::Deferred, 50)?)
        .await?;
    let body = html! {
        (task_filter(&ctx, "/upcoming", &params, html! {}))
        @if page.jobs.is_empty() {
            p.empty { "Nothing is deferred." }
        } @else {
            figure.timeline {
                (chart::timeline_svg(&page.jobs, Utc::now(), |id| ctx.href(&format!("/jobs/{}", encode_path(id)))))
                figcaption { "When this page's jobs run, from now." }
            }
            (upcoming_table(&ctx, &page.jobs))
        }
        (pager(&ctx, "/upcoming", &params, page.next.as_deref()))
    };
    Ok(ctx.page(Nav::Upcoming, "Upcoming", body))
}

fn upcoming_table(ctx: &Ctx, jobs: &[JobInfo]) -> Markup {
    html! {
        table.jobs {
            thead { tr { th { "Runs" } th { "Job" } th { "Task" } th { "Arguments" } th { "Attempts" } th {} } }
            tbody {
                @for job in jobs {
                    tr data-job=(job.job_id) {
                        td { (when(job.run_at)) }
                        td { (job_link(ctx, &job.job_id)) }
                        td { (job.task) }
                        td { (json_preview(job.args.as_ref(), 80)) }
                        td { (job.attempts) }
                        td.actions {
                            (ctx.action("run-now", "Run now", &job.job_id, Some(job.generation), None))
                            (ctx.action("cancel", "Cancel", &job.job_id, Some(job.generation), Some("Cancel this job? It will not run.")))
                        }
                    }
                }
            }
        }
    }
}

/// A running job's progress: a bar for a number from 0 to 1 (or 0 to
/// 100), or for `{"done": n, "total": m}`; the JSON beside it.
fn progress(value: Option<&serde_json::Value>) -> Markup {
    let fraction = value.and_then(|v| {
        let f = match v {
            serde_json::Value::Number(n) => n.as_f64().map(|f| if f > 1.0 { f / 100.0 } else { f }),
            serde_json::Value::Object(o) => {
                let done = o.get("done").and_then(|d| d.as_f64())?;
                let total = o
                    .get("total")
                    .and_then(|t| t.as_f64())
                    .filter(|t| *t > 0.0)?;
                Some(done / total)
            }
            _ => None,
        }?;
        Some(f.clamp(0.0, 1.0))
    });
    html! {
        @if let Some(f) = fraction {
            progress value=(format!("{f:.3}")) max="1" { (format!("{:.0}%", f * 100.0)) }
            " "
        }
        (json_preview(value, 60))
    }
}

/// `GET /running`: running jobs, their worker, lease and progress.
pub(crate) async fn running(
    ctx: Ctx,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let page = ctx
        .scheduler
        .list(&params.query(ListState::Running, 100)?)
        .await?;
    let body = html! {
        (task_filter(&ctx, "/running", &params, html! {}))
        @if page.jobs.is_empty() {
            p.empty { "Nothing is running." }
        } @else {
            table.jobs {
                thead { tr { th { "Job" } th { "Task" } th { "Worker" } th { "Attempt" } th { "Started" } th { "Lease until" } th { "Progress" } th {} } }
                tbody {
                    @for job in &page.jobs {
                        @let (attempt, worker) = match &job.status {
                            JobStatus::Running { attempt, worker } => (*attempt, worker.as_str()),
                            _ => (job.attempts, ""),
                        };
                        tr data-job=(job.job_id) {
                            td { (job_link(&ctx, &job.job_id)) }
                            td { (job.task) }
                            td { code { (worker) } }
                            td { (attempt) " of " (job.max_attempts) }
                            td { (when(job.started_at)) }
                            td { (when(job.lease_until)) }
                            td.progress { (progress(job.progress.as_ref())) }
                            td.actions {
                                (ctx.action("cancel", "Abort", &job.job_id, Some(job.generation), Some("Abort this job? Its task is stopped and it ends cancelled.")))
                            }
                        }
                    }
                }
            }
        }
        (pager(&ctx, "/running", &params, page.next.as_deref()))
    };
    Ok(ctx.page(Nav::Running, "Running", body))
}

/// `GET /failed`: dead-lettered jobs with their reason.
pub(crate) async fn failed(
    ctx: Ctx,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let page = ctx
        .scheduler
        .list(&params.query(ListState::DeadLettered, 50)?)
        .await?;
    let body = html! {
        (task_filter(&ctx, "/failed", &params, html! {}))
        p { "Jobs that failed for good and were kept in the dead letters. "
            a href=(ctx.href("/jobs?state=finished&outcome=failed")) { "Every recent failed outcome →" } }
        @if page.jobs.is_empty() {
            p.empty { "No dead-lettered jobs." }
        } @else {
            table.jobs {
                thead { tr { th { "Failed" } th { "Job" } th { "Task" } th { "Reason" } th { "Attempts" } th { "Arguments" } th {} } }
                tbody {
                    @for job in &page.jobs {
                        tr data-job=(job.job_id) {
                            td { (when(job.finished_at)) }
                            td { (job_link(&ctx, &job.job_id)) }
                            td { (job.task) }
                            td.reason { (job.last_error.as_deref().unwrap_or("")) }
                            td { (job.attempts) }
                            td { (json_preview(job.args.as_ref(), 60)) }
                            td.actions {
                                (ctx.action("retry", "Retry", &job.job_id, None, None))
                                (ctx.action("delete", "Delete", &job.job_id, None, Some("Delete this dead letter for good?")))
                            }
                        }
                    }
                }
            }
        }
        (pager(&ctx, "/failed", &params, page.next.as_deref()))
    };
    Ok(ctx.page(Nav::Failed, "Failed", body))
}

/// `GET /jobs`: any state, filtered.
pub(crate) async fn jobs(
    ctx: Ctx,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let state_name = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("queued");
    let state = ListState::parse(state_name).ok_or_else(|| {
        PageError::new(StatusCode::BAD_REQUEST, format!("no state {state_name:?}"))
    })?;
    let page = ctx.scheduler.list(&params.query(state, 50)?).await?;
    let select = html! {
        label { "State "
            select name="state" {
                @for name in ["deferred", "queued", "running", "finished", "dead"] {
                    option value=(name) selected[name == state.as_str()] { (name) }
                }
            }
        }
        label { "Outcome "
            select name="outcome" {
                option value="" { "any" }
                @for name in ["completed", "failed", "cancelled"] {
                    option value=(name) selected[params.outcome.as_deref() == Some(name)] { (name) }
                }
            }
        }
    };
    let body = html! {
        (task_filter(&ctx, "/jobs", &params, select))
        @if !page.unreadable.is_empty() {
            p.warning { (page.unreadable.len()) " entries could not be read: " (page.unreadable.join(", ")) }
        }
        @if page.jobs.is_empty() {
            p.empty { "No jobs." }
        } @else {
            table.jobs {
                thead { tr { th { "Job" } th { "Task" } th { "Status" } th { "Runs / ran" } th { "Attempts" } th { "Last error" } } }
                tbody {
                    @for job in &page.jobs {
                        tr data-job=(job.job_id) {
                            td { (job_link(&ctx, &job.job_id)) }
                            td { (job.task) }
                            td { (status_badge(&job.status)) }
                            td { (when(job.finished_at.or(job.started_at.filter(|_| matches!(job.status, JobStatus::Running { .. }))).or(job.run_at))) }
                            td { (job.attempts) }
                            td.reason { (job.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        (pager(&ctx, "/jobs", &params, page.next.as_deref()))
    };
    Ok(ctx.page(Nav::Jobs, "Jobs", body))
}

/// `GET /jobs/{id}`: everything known about one job.
pub(crate) async fn job(ctx: Ctx, Path(id): Path<String>) -> Result<Response, PageError> {
    let Some(info) = ctx.scheduler.info(&id).await? else {
        let body =
            html! { p.empty { "No job " code { (id) } " (unknown, or its outcome has expired)." } };
        return Ok((
            StatusCode::NOT_FOUND,
            ctx.page(Nav::Jobs, "Job not found", body),
        )
            .into_response());
    };
    // A job that failed for good is usually in the dead letters (unless a
    // waiting replacement superseded it, or the cap pushed it out): retry
    // and delete say so when it is not.
    let dead = info.status == JobStatus::Failed;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        p { (status_badge(&info.status)) " " code.id { (info.job_id) } }
        div.actions {
            @match &info.status {
                JobStatus::Deferred { .. } | JobStatus::Queued { .. } => {
                    (ctx.action("run-now", "Run now", &info.job_id, Some(info.generation), None))
                    (ctx.action("cancel", "Cancel", &info.job_id, Some(info.generation), Some("Cancel this job? It will not run.")))
                }
                JobStatus::Running { .. } => {
                    (ctx.action("cancel", "Abort", &info.job_id, Some(info.generation), Some("Abort this job? Its task is stopped and it ends cancelled.")))
                }
                _ => {}
            }
            @if dead {
                (ctx.action("retry", "Retry", &info.job_id, None, None))
                (ctx.action("delete", "Delete", &info.job_id, None, Some("Delete this dead letter for good?")))
            }
        }
        dl.detail {
            dt { "Task" } dd { (info.task) }
            dt { "Generation" } dd { (info.generation) }
            @if let Some(queue) = &info.queue {
                dt { "Queue" } dd { (queue) ", priority " (info.priority) }
            }
            @if let Some(key) = &info.limit_key {
                dt { "Limit key" } dd { code { (key) } }
            }
            @if let Some(waiting) = &info.waiting {
                dt { "Waiting for" } dd { (waiting.to_string()) }
            }
            @if let JobStatus::Running { worker, attempt } = &info.status {
                dt { "Worker" } dd { code { (worker) } " (attempt " (attempt) ")" }
            }
            dt { "Attempts" } dd { (info.attempts) " of " (info.max_attempts) }
            dt { "Enqueued" } dd { (when(info.enqueued_at)) }
            dt { "Runs / ran at" } dd { (when(info.run_at)) }
            dt { "Started" } dd { (when(info.started_at)) }
            dt { "Finished" } dd { (when(info.finished_at)) }
            @if info.lease_until.is_some() {
                dt { "Lease until" } dd { (when(info.lease_until)) }
            }
            dt { "Last error" } dd.reason { (info.last_error.as_deref().unwrap_or("—")) }
        }
        h2 { "Arguments" }
        @match &info.args {
            Some(args) => pre.json { (pretty(args)) },
            None => p.muted { "Not kept (a finished job's arguments are dropped)." },
        }
        h2 { "Progress" }
        @match &info.progress {
            Some(p) => pre.json { (pretty(p)) },
            None => p.muted { "None reported." },
        }
        @if let Some(result) = &info.result {
            h2 { "Result" }
            pre.json { (result) }
        }
    };
    Ok(ctx.page(Nav::Jobs, &format!("Job {id}"), body))
}

/// `GET /schedules`: periodic tasks.
pub(crate) async fn schedules(ctx: Ctx) -> Result<Response, PageError> {
    let schedules = ctx.scheduler.schedules().await?;
    let body = html! {
        @if schedules.is_empty() {
            p.empty { "No periodic tasks." }
        } @else {
            table.jobs {
                thead { tr { th { "Name" } th { "Task" } th { "When" } th { "Next runs" } th { "Last run" } th { "State" } th {} } }
                tbody {
                    @for schedule in &schedules {
                        tr data-schedule=(schedule.name) {
                            td { code { (schedule.name) } }
                            td { (schedule.task) }
                            td { code { (schedule.expression) } " " span.muted { (schedule.zone) } }
                            td {
                                @for run in schedule.next_runs.iter().take(3) { (when(Some(*run))) br; }
                                @if schedule.next_runs.is_empty() { span.muted { "—" } }
                            }
                            td {
                                @if let Some((at, status)) = &schedule.last_run {
                                    (when(Some(*at))) " " (status_badge(status))
                                } @else { span.muted { "—" } }
                            }
                            td { @if schedule.paused { span.badge.paused { "paused" } } @else { span.badge.active { "active" } } }
                            td.actions {
                                @if schedule.paused {
                                    (ctx.action("resume", "Resume", &schedule.name, None, None))
                                } @else {
                                    (ctx.action("pause", "Pause", &schedule.name, None, Some("Pause this schedule? Its next tick is removed.")))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page(Nav::Schedules, "Schedules", body))
}

/// Any other path below the dashboard.
pub(crate) async fn not_found(ctx: Ctx) -> Response {
    let body =
        html! { p.empty { "No such page. " a href=(ctx.href("")) { "Back to the overview" } } };
    (
        StatusCode::NOT_FOUND,
        ctx.page(Nav::Overview, "Not found", body),
    )
        .into_response()
}
