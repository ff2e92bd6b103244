//! A task with dependencies, the job context and a return value, used through
//! every generated helper.

use std::time::Duration;

use scheduler::chrono::{DateTime, Utc};
use scheduler::{
    task, CancelOutcome, Dep, EnqueueOutcome, Error, IfRunning, JobContext, JobStatus,
    ReplaceOutcome, Scheduler, Task, TaskError,
};
use serde::{Deserialize, Serialize};

pub trait Notifier: Send + Sync {
    fn notify(&self, user: &str, text: &str) -> bool;
}

#[derive(Serialize, Deserialize)]
pub struct Message {
    pub text: String,
}

#[derive(Serialize)]
pub struct Report {
    pub sent: usize,
}

/// Docs and attributes stay on the function.
#[task(max_attempts = 3, timeout = "30s")]
#[allow(clippy::needless_pass_by_value)]
pub async fn send_notification(
    notifier: Dep<dyn Notifier>,
    ctx: JobContext,
    user_ids: Vec<String>,
    message: Message,
) -> Result<Report, TaskError> {
    if ctx.is_cancelled() {
        return Err(TaskError::permanent("cancelled"));
    }
    let sent = user_ids
        .iter()
        .filter(|u| notifier.notify(u, &message.text))
        .count();
    Ok(Report { sent })
}

#[allow(dead_code)]
async fn use_helpers(scheduler: &Scheduler, when: DateTime<Utc>) -> Result<(), Error> {
    let msg = || Message { text: "hi".into() };
    let _: EnqueueOutcome =
        send_notification::enqueue(scheduler, "job-1", vec!["u1".into()], msg()).await?;
    let _: EnqueueOutcome =
        send_notification::defer_to(scheduler, "job-2", when, vec![], msg()).await?;
    let _: EnqueueOutcome =
        send_notification::defer_by(scheduler, "job-3", Duration::from_secs(60), vec![], msg())
            .await?;
    let _: ReplaceOutcome =
        send_notification::replace(scheduler, "job-2", when, vec![], msg()).await?;
    let _: CancelOutcome = send_notification::cancel(scheduler, "job-2").await?;
    let _: JobStatus = send_notification::status(scheduler, "job-2").await?;
    // Bulk and policies through the typed request.
    let requests = (0..3).map(|i| send_notification::job(vec![], msg()).id(format!("bulk-{i}")));
    let _: Vec<EnqueueOutcome> = scheduler.enqueue_many(requests).await?;
    let request = send_notification::job(vec![], msg()).id("job-4").at(when);
    let _ = scheduler.replace(request, IfRunning::QueueAfter).await?;
    // The stored result is typed by the task's `Ok` type.
    let _: Option<<send_notification as Task>::Output> = None::<Report>;
    Ok(())
}

fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
fn helpers_are_send(scheduler: &Scheduler) {
    let fut = send_notification::enqueue(scheduler, "job-1", vec![], Message { text: String::new() });
    assert_send(&fut);
}

fn main() {}
