//! The dashboard's actions (`POST /actions/{action}`): checked (read-only,
//! CSRF), done through the scheduler's API, then answered with a redirect
//! back to the page they came from, which shows what happened.

use axum::extract::{Form, Path};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::info;

use super::csrf;
use super::layout::Ctx;
use super::PageError;
use crate::{CancelOutcome, Rescheduled, When};

/// The fields of an action's form.
#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
    /// The job id (or the schedule's name).
    id: String,
    /// The generation the page showed: the action touches only that job.
    generation: Option<u64>,
    /// The page to go back to (below the dashboard).
    back: Option<String>,
}

/// `POST /actions/{action}`: cancel (abort a running job), run-now, retry,
/// delete, pause, resume.
pub(crate) async fn act(
    ctx: Ctx,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    if ctx.read_only {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This dashboard is read-only: it takes no actions.",
        ));
    }
    if !csrf::allowed(&headers, &form.csrf) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form's security token did not match (the page is old, or the request came \
             from another site): reload the page and try again.",
        ));
    }
    let s = &ctx.scheduler;
    let id = form.id.as_str();
    let generation = || {
        form.generation
            .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "the form names no generation"))
    };
    let notice = match action.as_str() {
        "cancel" => match s.cancel_generation(id, generation()?).await? {
            CancelOutcome::Removed { .. } => "cancelled",
            CancelOutcome::AbortSignalled { .. } => "aborting",
            CancelOutcome::AlreadyFinished(_) => "finished",
            CancelOutcome::NotFound => "changed",
        },
        "run-now" => match s
            .reschedule_generation(id, generation()?, When::Now)
            .await?
        {
            Rescheduled::Moved { .. } => "run-now",
            Rescheduled::Running { .. } => "running",
            Rescheduled::NotFound => "changed",
        },
        "retry" => match s.requeue_dead_letter(id).await? {
            Some(_) => "retried",
            None => "not-dead",
        },
        "delete" => match s.delete_dead_letter(id).await? {
            true => "deleted",
            false => "not-dead",
        },
        "pause" => {
            s.pause_schedule(id).await?;
            "paused"
        }
        "resume" => {
            s.resume_schedule(id).await?;
            "resumed"
        }
        other => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}"),
            ))
        }
    };
    info!(action, id, notice, "dashboard action");
    let location = back_to(&ctx, form.back.as_deref(), notice, id);
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

/// Where to go after an action: the page it came from (a path below the
/// dashboard; anything else means the overview), with the notice.
fn back_to(ctx: &Ctx, back: Option<&str>, notice: &str, subject: &str) -> String {
    let back = back
        .filter(|b| b.starts_with('/') && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or("/");
    let (path, query) = back.split_once('?').unwrap_or((back, ""));
    let path = if path == "/" { "" } else { path };
    format!("{}?{}", ctx.href(path), with_notice(query, notice, subject))
}

/// A page's query with the notice of an action in place of any earlier one.
fn with_notice(query: &str, notice: &str, subject: &str) -> String {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    pairs.extend_pairs(
        form_pairs(query)
            .into_iter()
            .filter(|(name, _)| name != "notice" && name != "subject"),
    );
    pairs.append_pair("notice", notice);
    pairs.append_pair("subject", subject);
    pairs.finish()
}

/// The text of the notice named in a page's query, if any.
pub(crate) fn notice_from_query(query: &str) -> Option<String> {
    let mut notice = None;
    let mut subject = String::new();
    for (name, value) in form_pairs(query) {
        match name.as_str() {
            "notice" => notice = Some(value),
            "subject" => subject = value,
            _ => {}
        }
    }
    let text = match notice?.as_str() {
        "cancelled" => "was cancelled: it will not run.",
        "aborting" => "is being aborted: its worker stops it and it ends cancelled.",
        "finished" => "had already finished: nothing changed.",
        "changed" => "is no longer the job this page showed (it ran, was replaced or removed): nothing changed.",
        "run-now" => "runs now: it is queued for the next free worker.",
        "running" => "is running already: nothing changed.",
        "retried" => "is back in the queue with fresh attempts.",
        "deleted" => "was deleted from the dead letters.",
        "not-dead" => "is not in the dead letters (retried or deleted already, or its id is in use): nothing changed.",
        "paused" => "is paused.",
        "resumed" => "is planned again.",
        _ => return None,
    };
    Some(format!("{subject} {text}"))
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_replaces_the_last_and_keeps_the_filters() {
        assert_eq!(
            with_notice(
                "task=send+mail&notice=deleted&subject=a",
                "cancelled",
                "job 1/2"
            ),
            "task=send+mail&notice=cancelled&subject=job+1%2F2"
        );
        assert_eq!(with_notice("", "retried", "x"), "notice=retried&subject=x");
    }

    #[test]
    fn notices_name_their_job_and_ignore_unknown_codes() {
        assert_eq!(
            notice_from_query("task=x&notice=cancelled&subject=a%20b"),
            Some("a b was cancelled: it will not run.".to_string())
        );
        assert_eq!(notice_from_query("notice=%3Cscript%3E&subject=x"), None);
        assert_eq!(notice_from_query("task=x"), None);
        assert_eq!(
            notice_from_query("notice=deleted&subject=%E2%9C%93+ok"),
            Some("✓ ok was deleted from the dead letters.".to_string())
        );
    }
}
