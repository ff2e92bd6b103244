//! The history model: one [`Event`] per acknowledgement, run start, run end,
//! observation of a job's state, and injected fault. Serialized as one JSON
//! object per line (worker processes append them to a file).
//!
//! Times are microseconds of the host's wall clock (`t`, `t_call`, `t_ack`);
//! run times and `finished_ms` are milliseconds as Redis reported them (the
//! same clock: see the module docs of `history`).

use serde::{Deserialize, Serialize};

/// What an operation's reply said, reduced to what the checker needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Answer {
    /// A new generation exists (enqueue, replace with no pending job, requeue).
    Enqueued {
        generation: u64,
        run_at_ms: Option<i64>,
    },
    /// Nothing changed: a job with this id is pending.
    Duplicate {
        generation: u64,
    },
    /// A pending (deferred, queued or waiting) job was replaced by `generation`.
    Replaced {
        generation: u64,
        run_at_ms: i64,
    },
    /// `aborted` was told to stop; `generation` waits for it.
    AbortedRunning {
        generation: u64,
        run_at_ms: i64,
        aborted: u64,
    },
    /// `generation` waits for `running` to finish.
    QueuedAfter {
        generation: u64,
        run_at_ms: i64,
        running: u64,
    },
    /// `IfRunning::Keep` found `generation` running: nothing changed.
    KeptRunning {
        generation: u64,
    },
    /// Cancel removed this pending generation: it must never start again.
    Removed {
        generation: u64,
    },
    /// Cancel told this running generation to abort, and removed the
    /// replacement that waited behind it, if any.
    AbortSignalled {
        generation: u64,
        removed_successor: Option<u64>,
    },
    NotFound,
    AlreadyFinished {
        state: String,
    },
    /// `requeue_dead_letter` found nothing to requeue.
    NothingToRequeue,
    /// The call failed (the write may or may not have happened).
    Error {
        error: String,
    },
}

impl Answer {
    /// The generation this answer created, if any.
    pub fn created(&self) -> Option<u64> {
        match self {
            Answer::Enqueued { generation, .. }
            | Answer::Replaced { generation, .. }
            | Answer::AbortedRunning { generation, .. }
            | Answer::QueuedAfter { generation, .. } => Some(*generation),
            _ => None,
        }
    }

    /// The run time promised for the generation it created.
    pub fn due_ms(&self) -> Option<i64> {
        match self {
            Answer::Enqueued { run_at_ms, .. } => *run_at_ms,
            Answer::Replaced { run_at_ms, .. }
            | Answer::AbortedRunning { run_at_ms, .. }
            | Answer::QueuedAfter { run_at_ms, .. } => Some(*run_at_ms),
            _ => None,
        }
    }
}

/// An acknowledged (or failed) operation of a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub client: String,
    /// `enqueue`, `defer`, `replace:abort`, `cancel`, `cancel_gen`, `requeue`, ...
    pub op: String,
    pub id: String,
    /// For `cancel_gen`: the generation asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_generation: Option<u64>,
    pub t_call: i64,
    pub t_ack: i64,
    pub answer: Answer,
}

/// A run of a task began (written before the task body does anything).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub worker: String,
    pub id: String,
    pub generation: u64,
    pub attempt: u32,
    /// `JobContext::scheduled_at`, ms.
    pub scheduled_ms: i64,
    pub t: i64,
}

/// A run ended: `ok`, `retry`, `permanent` (what the task returned), or
/// `dropped` (its future was dropped: aborted, lease lost, shutdown; written
/// by a drop guard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub worker: String,
    pub id: String,
    pub generation: u64,
    pub attempt: u32,
    pub result: String,
    pub t: i64,
}

/// A client read a job's state (`Scheduler::info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub client: String,
    pub id: String,
    pub t: i64,
    /// `None`: no job (or outcome) known for the id.
    pub generation: Option<u64>,
    /// `deferred`, `queued`, `running`, `completed`, `failed`, `cancelled`, `not_found`.
    pub status: String,
    pub attempts: u32,
    pub finished_ms: Option<i64>,
    /// Whether this is the final read after the quiet period.
    #[serde(default)]
    pub last: bool,
}

/// A fault the test injected, or a worker process that went away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// `close_after`, `duplicate`, `delay`, `blackhole`, `sigstop`, `sigkill`,
    /// `worker_close`, `redis_restart`, and `gone` (a worker process ended:
    /// its open runs end here).
    pub kind: String,
    /// Which worker, proxy or command.
    pub target: String,
    pub t: i64,
    /// When the fault was lifted (blackhole, delay, sigstop), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// One entry of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    Ack(Ack),
    Start(Start),
    End(End),
    Observed(Observation),
    Fault(Fault),
}

impl Event {
    /// When it happened (µs, host wall clock); for an ack, its reply.
    pub fn time(&self) -> i64 {
        match self {
            Event::Ack(a) => a.t_ack,
            Event::Start(s) => s.t,
            Event::End(e) => e.t,
            Event::Observed(o) => o.t,
            Event::Fault(f) => f.t,
        }
    }

    /// The job id it concerns, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Event::Ack(a) => Some(&a.id),
            Event::Start(s) => Some(&s.id),
            Event::End(e) => Some(&e.id),
            Event::Observed(o) => Some(&o.id),
            Event::Fault(_) => None,
        }
    }
}

/// Now, in microseconds of the host's wall clock.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
