//! Job events: what [`Scheduler::events`](crate::Scheduler::events) reports.

use chrono::{DateTime, Utc};

use crate::clock::time_from_ms;

/// One change of one job, as [`Scheduler::events`](crate::Scheduler::events)
/// reports it, from whichever process made the change.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobEvent {
    /// What happened.
    pub kind: JobEventKind,
    /// The job's id.
    pub job_id: String,
    /// The job's task (empty for a record that could not be read).
    pub task: String,
    /// The job's [generation](crate#generations) (0 for a record that could
    /// not be read).
    pub generation: u64,
    /// Attempts started when it happened (so, from `Started` on, the
    /// attempt it is about).
    pub attempt: u32,
    /// When it happened, by the backend's clock (Redis `TIME`).
    pub at: DateTime<Utc>,
}

/// What happened to a job (see [`JobEvent`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JobEventKind {
    /// The job was created (enqueued, planned by a schedule, or re-queued
    /// from the dead letter), to run at `run_at`. `replaced` names the
    /// generation of the pending job it took the place of, if any.
    Enqueued {
        /// When it is due.
        run_at: DateTime<Utc>,
        /// The generation of the pending job it replaced.
        replaced: Option<u64>,
    },
    /// The job was moved to another run time
    /// ([`Scheduler::reschedule`](crate::Scheduler::reschedule)).
    Rescheduled {
        /// When it is due now.
        run_at: DateTime<Utc>,
    },
    /// An attempt started; `run_at` is the time it was due.
    Started {
        /// When the attempt was due.
        run_at: DateTime<Utc>,
    },
    /// The running attempt reported progress
    /// ([`JobContext::progress`](crate::JobContext::progress)).
    Progress(serde_json::Value),
    /// An attempt failed (or its lease expired) and the job will be tried
    /// again at `run_at`.
    Retried {
        /// Why the attempt failed.
        error: String,
        /// When the next attempt is due.
        run_at: DateTime<Utc>,
    },
    /// A worker that shut down put the running job back, due at `run_at`
    /// (no attempt used up).
    Released {
        /// When it is due again.
        run_at: DateTime<Utc>,
    },
    /// The job completed; [`Scheduler::result`](crate::Scheduler::result)
    /// has its value.
    Completed,
    /// The job failed for good. A job moved to the dead letter reports
    /// [`DeadLettered`](Self::DeadLettered) first.
    Failed {
        /// Why.
        reason: String,
    },
    /// The job was cancelled (or superseded by a replacement).
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The job was moved to the dead letter.
    DeadLettered {
        /// Why.
        reason: String,
    },
}

/// Events may have been lost: the stream's connection to Redis dropped (and
/// was re-established), or the reader fell more than the stream's capacity
/// behind. Read the durable state to catch up:
/// [`info`](crate::Scheduler::info) of the jobs you follow,
/// [`counts`](crate::Scheduler::counts),
/// [`list_pending`](crate::Scheduler::list_pending) and
/// [`dead_letters`](crate::Scheduler::dead_letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("job events may have been lost (a reconnect, or a reader that fell behind): read the durable state to catch up")]
pub struct EventsMissed;

/// Reads one event as the scripts publish it (common.lua `emit`): a JSON
/// array of text, kind, id, task, generation, attempts, when (ms), run at
/// (ms, or empty), detail. `None` for a message that does not read as one
/// (or of a kind this version does not know: a newer version's).
pub(crate) fn from_wire(message: &[u8]) -> Option<JobEvent> {
    let [kind, id, task, generation, attempt, at, run_at, detail]: [String; 8] =
        serde_json::from_slice(message).ok()?;
    let run_at = run_at.parse::<i64>().ok().map(time_from_ms);
    let kind = event_kind(&kind, run_at, detail)?;
    Some(JobEvent {
        kind,
        job_id: id,
        task,
        generation: generation.parse().ok()?,
        attempt: attempt.parse().ok()?,
        at: time_from_ms(at.parse().ok()?),
    })
}

/// The kind of an event from its wire name, run time and detail.
pub(crate) fn event_kind(
    kind: &str,
    run_at: Option<DateTime<Utc>>,
    detail: String,
) -> Option<JobEventKind> {
    Some(match kind {
        "enqueued" => JobEventKind::Enqueued {
            run_at: run_at?,
            replaced: detail.parse().ok(),
        },
        "started" => JobEventKind::Started { run_at: run_at? },
        "rescheduled" => JobEventKind::Rescheduled { run_at: run_at? },
        "progress" => JobEventKind::Progress(
            serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        ),
        "retried" => JobEventKind::Retried {
            error: detail,
            run_at: run_at?,
        },
        "released" => JobEventKind::Released { run_at: run_at? },
        "completed" => JobEventKind::Completed,
        "failed" => JobEventKind::Failed { reason: detail },
        "cancelled" => JobEventKind::Cancelled { reason: detail },
        "dead_lettered" => JobEventKind::DeadLettered { reason: detail },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_wire_format() {
        let event = from_wire(
            br#"["retried","job-1","send","42","2","1700000000123","1700000005123","boom"]"#,
        )
        .expect("an event");
        assert_eq!(event.job_id, "job-1");
        assert_eq!(event.task, "send");
        assert_eq!((event.generation, event.attempt), (42, 2));
        assert_eq!(event.at.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(
            event.kind,
            JobEventKind::Retried {
                error: "boom".into(),
                run_at: time_from_ms(1_700_000_005_123)
            }
        );
        let progress =
            from_wire(br#"["progress","j","t","1","1","5","","{\"done\":3}"]"#).expect("an event");
        assert_eq!(
            progress.kind,
            JobEventKind::Progress(serde_json::json!({"done": 3}))
        );
        let enqueued = from_wire(br#"["enqueued","j","t","9","0","5","7","8"]"#).expect("event");
        assert_eq!(
            enqueued.kind,
            JobEventKind::Enqueued {
                run_at: time_from_ms(7),
                replaced: Some(8)
            }
        );
    }

    #[test]
    fn unknown_or_malformed_messages_are_skipped() {
        assert!(from_wire(br#"["teleported","j","t","1","1","5","",""]"#).is_none());
        assert!(from_wire(b"not json").is_none());
        assert!(from_wire(br#"["started","j","t","x","1","5","5",""]"#).is_none());
        assert!(from_wire(br#"["started","j","t","1","1","5","",""]"#).is_none());
    }
}
