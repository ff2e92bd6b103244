//! A producer client: draws operations from its generator, sends them, and
//! records each reply (or error) with its generation and the times of call
//! and reply. After a reply that asks a running generation to abort, a
//! watcher reads the job's state for a while so the checker sees how that
//! generation ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scheduler::{
    CancelOutcome, EnqueueOutcome, Error, JobRequest, JobStatus, ReplaceOutcome, Scheduler,
};

use super::event::{now_us, Ack, Answer, Event, Observation};
use super::plan::{next_op, Op};
use super::recorder::Recorder;
use super::rng::Rng;
use super::task::{HistArgs, HistTask};

/// The newest generation acknowledged per id, shared by the producers of a run.
#[derive(Clone, Default)]
pub struct Generations(Arc<Mutex<HashMap<String, u64>>>);

impl Generations {
    fn saw(&self, id: &str, generation: u64) {
        let mut map = self.0.lock().unwrap();
        let g = map.entry(id.to_string()).or_default();
        *g = (*g).max(generation);
    }

    fn newest(&self, id: &str) -> Option<u64> {
        self.0.lock().unwrap().get(id).copied()
    }
}

fn request(id: &str, args: &HistArgs) -> JobRequest<HistTask> {
    JobRequest::<HistTask>::new(args.clone()).id(id)
}

fn enqueue_answer(r: Result<EnqueueOutcome, Error>) -> Answer {
    match r {
        Ok(EnqueueOutcome::Enqueued {
            generation, run_at, ..
        }) => Answer::Enqueued {
            generation,
            run_at_ms: Some(run_at.timestamp_millis()),
        },
        Ok(EnqueueOutcome::Duplicate { generation, .. }) => Answer::Duplicate { generation },
        Ok(EnqueueOutcome::RecentlyFinished { state, .. }) => Answer::AlreadyFinished {
            state: format!("{state:?}"),
        },
        Err(e) => Answer::Error {
            error: e.to_string(),
        },
    }
}

fn replace_answer(r: Result<ReplaceOutcome, Error>) -> Answer {
    match r {
        Ok(ReplaceOutcome::Enqueued { generation, run_at }) => Answer::Enqueued {
            generation,
            run_at_ms: Some(run_at.timestamp_millis()),
        },
        Ok(ReplaceOutcome::Replaced {
            generation,
            run_at,
            replaced_generation,
            ..
        }) => Answer::Replaced {
            generation,
            run_at_ms: run_at.timestamp_millis(),
            replaced: Some(replaced_generation),
        },
        Ok(ReplaceOutcome::AbortedRunning {
            generation,
            run_at,
            aborted_generation,
            replaced_waiting,
        }) => Answer::AbortedRunning {
            generation,
            run_at_ms: run_at.timestamp_millis(),
            aborted: aborted_generation,
            replaced: replaced_waiting,
        },
        Ok(ReplaceOutcome::QueuedAfterRunning {
            generation,
            run_at,
            running_generation,
            replaced_waiting,
        }) => Answer::QueuedAfter {
            generation,
            run_at_ms: run_at.timestamp_millis(),
            running: running_generation,
            replaced: replaced_waiting,
        },
        Ok(ReplaceOutcome::Running { generation }) => Answer::KeptRunning { generation },
        Err(e) => Answer::Error {
            error: e.to_string(),
        },
    }
}

fn cancel_answer(r: Result<CancelOutcome, Error>) -> Answer {
    match r {
        Ok(CancelOutcome::Removed { generation }) => Answer::Removed { generation },
        Ok(CancelOutcome::AbortSignalled {
            generation,
            removed_successor,
        }) => Answer::AbortSignalled {
            generation,
            removed_successor,
        },
        Ok(CancelOutcome::NotFound) => Answer::NotFound,
        Ok(CancelOutcome::AlreadyFinished(state)) => Answer::AlreadyFinished {
            state: format!("{state:?}"),
        },
        Err(e) => Answer::Error {
            error: e.to_string(),
        },
    }
}

/// Reads a job's state and records it; the generation and status read.
pub async fn observe(
    s: &Scheduler,
    client: &str,
    id: &str,
    last: bool,
    rec: &Recorder,
) -> Option<(Option<u64>, String)> {
    let info = s.info(id).await.ok()?;
    let (generation, status, attempts, finished_ms) = match info {
        None => (None, "not_found".to_string(), 0, None),
        Some(i) => {
            let status = match i.status {
                JobStatus::Deferred { .. } => "deferred",
                JobStatus::Queued { .. } => "queued",
                JobStatus::Running { .. } => "running",
                JobStatus::Completed => "completed",
                JobStatus::Failed => "failed",
                JobStatus::Cancelled => "cancelled",
                JobStatus::NotFound => "not_found",
            };
            (
                Some(i.generation),
                status.to_string(),
                i.attempts,
                i.finished_at.map(|t| t.timestamp_millis()),
            )
        }
    };
    rec.record(Event::Observed(Observation {
        client: client.to_string(),
        id: id.to_string(),
        t: now_us(),
        generation,
        status: status.clone(),
        attempts,
        finished_ms,
        last,
    }));
    Some((generation, status))
}

/// Reads the job every 30 ms for up to 3 s, until `generation` is no longer
/// the one shown or has finished.
fn watch(s: Scheduler, client: String, id: String, generation: u64, rec: Recorder) {
    tokio::spawn(async move {
        for _ in 0..100 {
            match observe(&s, &client, &id, false, &rec).await {
                Some((Some(g), status)) if g == generation => {
                    if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
                        return;
                    }
                }
                Some(_) => return,
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
}

/// One producer client.
pub struct Producer {
    pub name: String,
    pub scheduler: Scheduler,
    pub rng: Rng,
    pub ids: u64,
    pub recorder: Recorder,
    pub generations: Generations,
}

impl Producer {
    /// Sends operations until `deadline`, pausing 10–60 ms between them.
    pub async fn run_until(mut self, deadline: tokio::time::Instant) {
        while tokio::time::Instant::now() < deadline {
            let op = next_op(&mut self.rng, self.ids);
            self.apply(op).await;
            let pause = self.rng.range(10, 60);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    fn record(&self, op: &str, id: &str, asked: Option<u64>, t_call: i64, answer: Answer) {
        if let Some(g) = answer.created() {
            self.generations.saw(id, g);
        }
        let abort = match answer {
            Answer::AbortSignalled { generation, .. } => Some(generation),
            Answer::AbortedRunning { aborted, .. } => Some(aborted),
            _ => None,
        };
        self.recorder.record(Event::Ack(Ack {
            client: self.name.clone(),
            op: op.to_string(),
            id: id.to_string(),
            asked_generation: asked,
            t_call,
            t_ack: now_us(),
            answer,
        }));
        if let Some(g) = abort {
            watch(
                self.scheduler.clone(),
                format!("{}-watch", self.name),
                id.to_string(),
                g,
                self.recorder.clone(),
            );
        }
    }

    async fn apply(&self, op: Op) {
        let s = &self.scheduler;
        let t = now_us();
        match op {
            Op::Enqueue { id, args } => {
                let a = enqueue_answer(s.enqueue(request(&id, &args)).await);
                self.record("enqueue", &id, None, t, a);
            }
            Op::Defer { id, delay_ms, args } => {
                let r = request(&id, &args).after(Duration::from_millis(delay_ms));
                let a = enqueue_answer(s.enqueue(r).await);
                self.record("defer", &id, None, t, a);
            }
            Op::Replace {
                id,
                delay_ms,
                policy,
                args,
            } => {
                let r = request(&id, &args).after(Duration::from_millis(delay_ms));
                let a = replace_answer(s.replace(r, policy).await);
                self.record(&format!("replace:{policy:?}"), &id, None, t, a);
            }
            Op::Cancel { id } => {
                let a = cancel_answer(s.cancel(&id).await);
                self.record("cancel", &id, None, t, a);
            }
            Op::CancelGeneration { id } => {
                let Some(g) = self.generations.newest(&id) else {
                    return;
                };
                let a = cancel_answer(s.cancel_generation(&id, g).await);
                self.record("cancel_gen", &id, Some(g), t, a);
            }
            Op::CancelThenEnqueue { id, args } => {
                let a = cancel_answer(s.cancel(&id).await);
                self.record("cancel_then_enqueue:cancel", &id, None, t, a);
                let t = now_us();
                let a = enqueue_answer(s.enqueue(request(&id, &args)).await);
                self.record("cancel_then_enqueue:enqueue", &id, None, t, a);
            }
            Op::Requeue { id } => {
                let a = match s.requeue_dead_letter(&id).await {
                    Ok(Some(generation)) => Answer::Enqueued {
                        generation,
                        run_at_ms: None,
                    },
                    Ok(None) => Answer::NothingToRequeue,
                    Err(e) => Answer::Error {
                        error: e.to_string(),
                    },
                };
                self.record("requeue", &id, None, t, a);
            }
            Op::Observe { id } => {
                let _ = observe(s, &self.name, &id, false, &self.recorder).await;
            }
        }
    }
}
