//! The notification manager and the task that uses it.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use scheduler::{task, Dep, JobContext, TaskError};
use serde::{Deserialize, Serialize};

/// A notification's text (the guide's `schemas_notification.Message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Title.
    pub title: String,
    /// Body.
    pub content: String,
    /// The module that sent it.
    pub action_module: String,
}

/// One notification handed to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The job that delivered it.
    pub job_id: String,
    /// The recipient.
    pub user_id: String,
    /// The title.
    pub title: String,
    /// When the job was planned to run.
    pub planned_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: DateTime<Utc>,
}

/// Delivers notifications. This one records them (a real one would push to
/// devices); tests and the demo read what it delivered.
#[derive(Debug, Default)]
pub struct NotificationManager {
    delivered: Mutex<Vec<Delivery>>,
}

impl NotificationManager {
    /// Delivers `message` to each user.
    pub fn send_to_users(&self, ctx: &JobContext, user_ids: &[String], message: &Message) {
        let now = Utc::now();
        let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        for user_id in user_ids {
            tracing::info!(job_id = ctx.job_id(), user_id, title = %message.title, "notification delivered");
            delivered.push(Delivery {
                job_id: ctx.job_id().to_string(),
                user_id: user_id.clone(),
                title: message.title.clone(),
                planned_at: ctx.scheduled_at(),
                delivered_at: now,
            });
        }
    }

    /// Everything delivered so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Deliveries made by one job id.
    pub fn deliveries_of(&self, job_id: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.job_id == job_id)
            .collect()
    }
}

/// Sends `message` to `user_ids`. Safe to retry: a retried job delivers again
/// only if the previous attempt failed before delivering.
#[task(max_attempts = 3, timeout = "30s")]
pub async fn send_notification(
    manager: Dep<NotificationManager>,
    ctx: JobContext,
    user_ids: Vec<String>,
    message: Message,
) -> Result<usize, TaskError> {
    manager.send_to_users(&ctx, &user_ids, &message);
    Ok(user_ids.len())
}
