//! Judges a whole history. Each rule is one function over the [`Model`]
//! built from the events; every broken rule is a [`Violation`] naming the ids
//! it involves, so the report can print their slice of the history.
//!
//! The rules (issue 14):
//! - `overlap`: no two runs of one id overlap in time, whatever their
//!   generations and workers (a run of a killed or closed worker ends when
//!   its process went away; a run with no end lasts forever);
//! - `fence_reused`: no two runs share (id, generation, attempt);
//! - `early`: no run starts before the run time its generation was
//!   acknowledged with (Redis clock), nor before `scheduled_at`; no retry
//!   starts before the end of the failed attempt plus the delay it asked for;
//! - `superseded_started`: once a reply says a generation was removed, or that
//!   a newer generation of the id exists, that generation starts no new run
//!   (a run claimed before the reply may still begin late, once, when the reply
//!   said the generation was running);
//! - `completed_after_abort`: a generation answered `AbortSignalled` (or
//!   aborted by `replace`) is never seen `Completed`;
//! - `never_ran`: every acknowledged generation that no reply (or failed
//!   call) may have cancelled or replaced runs at least once;
//! - `successor_removed_silently`: the same, when a cancel of the whole id
//!   answered `AbortSignalled` for the running generation and so said nothing
//!   of the waiting one it removed (issue 14, item 18);
//! - `no_outcome`: after the quiet period, every id's last generation has
//!   finished;
//! - `outcome_not_from_owner`: a `Completed` outcome comes from the last run
//!   of its generation (that run's attempt, ended `ok` before the outcome was
//!   recorded), never from a worker that no longer owned the job;
//! - `ran_after_outcome`: no run of a generation starts after an outcome of
//!   that generation was seen recorded;
//! - `ran_unacknowledged`: every generation that runs was named by a reply
//!   (enqueue, replace, requeue), unless a call on that id failed before it
//!   started (then the reply that would have named it was lost): a reply of
//!   "nothing happened" to a request that did something is a lie.

use std::collections::{BTreeSet, HashMap};

use super::event::{Ack, Answer, Event};
use super::model::{Model, Run};

/// The names of the rules, as violations report them.
pub const RULES: [&str; 11] = [
    "overlap",
    "fence_reused",
    "early",
    "superseded_started",
    "completed_after_abort",
    "never_ran",
    "successor_removed_silently",
    "no_outcome",
    "outcome_not_from_owner",
    "ran_after_outcome",
    "ran_unacknowledged",
];

/// A broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub ids: Vec<String>,
    pub detail: String,
}

/// Every rule over `events`.
pub fn check(events: &[Event], retry_after_ms: i64) -> Vec<Violation> {
    let model = Model::build(events);
    let mut out = Vec::new();
    overlap(&model, &mut out);
    fence_reused(&model, &mut out);
    early(&model, retry_after_ms, &mut out);
    superseded_started(&model, &mut out);
    completed_after_abort(&model, &mut out);
    never_ran(&model, &mut out);
    no_outcome(&model, &mut out);
    outcome_owner(&model, &mut out);
    ran_unacknowledged(&model, &mut out);
    out
}

fn ran_unacknowledged(model: &Model, out: &mut Vec<Violation>) {
    let mut reported: BTreeSet<(&str, u64)> = BTreeSet::new();
    for run in &model.runs {
        let acks = model
            .acks
            .get(&run.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let named = acks.iter().any(|a| {
            a.answer.created() == Some(run.generation)
                || matches!(&a.answer, Answer::Duplicate { generation } if *generation == run.generation)
        });
        let unsure = acks
            .iter()
            .any(|a| matches!(a.answer, Answer::Error { .. }) && a.t_call <= run.start);
        if !named && !unsure && reported.insert((&run.id, run.generation)) {
            violation(
                out,
                "ran_unacknowledged",
                &run.id,
                format!(
                    "{} runs, but no reply named generation {} and no call on {} failed before",
                    run.describe(),
                    run.generation,
                    run.id
                ),
            );
        }
    }
}

fn violation(out: &mut Vec<Violation>, rule: &'static str, id: &str, detail: String) {
    out.push(Violation {
        rule,
        ids: vec![id.to_string()],
        detail,
    });
}

/// Slack after a SIGCONT within which a drop counts as done at the resume.
const RESUME_DROP_MS: i64 = 100;

/// When a run last did anything. A run of a worker that was stopped
/// (SIGSTOP) while it ran, and that ended while the worker was stopped or
/// right after it resumed, by a drop or by its process going away (killed
/// while stopped), ran nothing after the stop: the process was frozen, and on
/// resume the worker never polls a job past its lease's validity, so it drops
/// it before running any more of it. Its activity ended when the worker was
/// stopped. (An end later than `RESUME_DROP_MS` after the resume is not
/// excused: the run may have gone on.)
fn active_until(model: &Model, run: &Run) -> i64 {
    let end = run.end_or_max();
    if run.result != "dropped" && run.result != "gone" {
        return end;
    }
    model
        .faults
        .iter()
        .filter(|(kind, target, from, to)| {
            kind == "sigstop"
                && *target == run.worker
                && *from >= run.start
                && *from <= end
                && end <= *to + RESUME_DROP_MS * 1000
        })
        .map(|(_, _, from, _)| *from)
        .min()
        .unwrap_or(end)
}

fn overlap(model: &Model, out: &mut Vec<Violation>) {
    for id in model.ids() {
        let mut runs: Vec<&Run> = model.runs_of(&id).collect();
        runs.sort_by_key(|r| r.start);
        // One violation per run that later runs started inside of.
        for (i, a) in runs.iter().enumerate() {
            let until = active_until(model, a);
            let inside: Vec<&&Run> = runs[i + 1..].iter().filter(|b| b.start < until).collect();
            if let Some(first) = inside.first() {
                violation(
                    out,
                    "overlap",
                    &id,
                    format!(
                        "{} overlaps {} run(s), the first {}",
                        a.describe(),
                        inside.len(),
                        first.describe()
                    ),
                );
            }
        }
    }
}

fn fence_reused(model: &Model, out: &mut Vec<Violation>) {
    let mut seen: HashMap<(&str, u64, u32), &Run> = HashMap::new();
    for run in &model.runs {
        if let Some(first) = seen.insert((&run.id, run.generation, run.attempt), run) {
            violation(
                out,
                "fence_reused",
                &run.id,
                format!(
                    "{} and {} hold one fence token",
                    first.describe(),
                    run.describe()
                ),
            );
        }
    }
}

fn early(model: &Model, retry_after_ms: i64, out: &mut Vec<Violation>) {
    // The acknowledged run time of each generation, and when it was
    // acknowledged. A run that started before the reply came is not held to
    // it: the reply of a request re-sent after a lost reply describes the job
    // as it is then (a retry's due time, once an attempt failed), and the
    // run's own `scheduled_at` still bounds it.
    let mut due: HashMap<(&str, u64), (i64, i64)> = HashMap::new();
    for (id, acks) in &model.acks {
        for a in acks {
            if let (Some(g), Some(ms)) = (a.answer.created(), a.answer.due_ms()) {
                due.insert((id.as_str(), g), (ms, a.t_ack));
            }
        }
    }
    for run in &model.runs {
        let promised = due
            .get(&(run.id.as_str(), run.generation))
            .filter(|(_, t_ack)| run.start >= *t_ack)
            .map(|(ms, _)| *ms);
        for (what, ms) in [
            ("its acknowledged run time", promised),
            ("scheduled_at", Some(run.scheduled_ms)),
        ] {
            if let Some(ms) = ms {
                if run.start < ms * 1000 {
                    violation(
                        out,
                        "early",
                        &run.id,
                        format!(
                            "{} started {:.1} ms before {what} ({ms} ms)",
                            run.describe(),
                            (ms * 1000 - run.start) as f64 / 1000.0
                        ),
                    );
                }
            }
        }
        // A retry starts no earlier than the failed attempt's end plus the delay it asked for.
        let previous = model.runs_of(&run.id).find(|p| {
            p.generation == run.generation && p.attempt + 1 == run.attempt && p.result == "retry"
        });
        // (Unless a fault may have cost that attempt its lease: then the next
        // one may come from the lease's expiry, the retry being refused.)
        if let Some(p) = previous.filter(|p| !model.disturbed(p)) {
            if let Some(end) = p.end {
                // Less 1 ms: the backend counts the delay from its clock in whole ms.
                if run.start < end + retry_after_ms * 1000 - 1000 {
                    violation(
                        out,
                        "early",
                        &run.id,
                        format!(
                            "retry {} started {:.1} ms after {} ended (asked for {retry_after_ms} ms)",
                            run.describe(),
                            (run.start - end) as f64 / 1000.0,
                            p.describe()
                        ),
                    );
                }
            }
        }
    }
}

/// Whether a reply said `generation` was removed.
fn removed(acks: &[Ack], generation: u64) -> bool {
    acks.iter().any(|a| match a.answer {
        Answer::Removed { generation: g } => g == generation,
        Answer::AbortSignalled {
            removed_successor, ..
        } => removed_successor == Some(generation),
        _ => false,
    })
}

/// Replies after which `generation` of the id may start no new run:
/// (the ack, whether a run claimed before the reply may still begin late).
fn barriers(acks: &[Ack], generation: u64) -> Vec<(&Ack, bool)> {
    let mut out = Vec::new();
    for a in acks {
        let late_ok = match &a.answer {
            Answer::Removed { generation: g } if *g == generation => Some(false),
            Answer::AbortSignalled {
                removed_successor: Some(g),
                ..
            } if *g == generation => Some(false),
            Answer::AbortSignalled { generation: g, .. } if *g == generation => Some(true),
            Answer::AbortedRunning { generation: n, .. } if *n > generation => Some(true),
            // While `n` waits, `generation` may not run again; once `n` is
            // cancelled, a release at shutdown may requeue `generation`.
            Answer::QueuedAfter { generation: n, .. } | Answer::Replaced { generation: n, .. }
                if *n > generation && !removed(acks, *n) =>
            {
                Some(true)
            }
            Answer::Enqueued { generation: n, .. } if *n > generation => Some(false),
            _ => None,
        };
        if let Some(late_ok) = late_ok {
            out.push((a, late_ok));
        }
    }
    out
}

fn superseded_started(model: &Model, out: &mut Vec<Violation>) {
    let generations: BTreeSet<(&str, u64)> = model
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.generation))
        .collect();
    for (id, generation) in generations {
        let Some(acks) = model.acks.get(id) else {
            continue;
        };
        let runs: Vec<&Run> = model
            .runs_of(id)
            .filter(|r| r.generation == generation)
            .collect();
        for (ack, late_ok) in barriers(acks, generation) {
            let before = runs
                .iter()
                .filter(|r| r.start <= ack.t_call)
                .map(|r| r.attempt)
                .max()
                .unwrap_or(0);
            let late: Vec<&&Run> = runs.iter().filter(|r| r.start > ack.t_ack).collect();
            let allowed = late_ok && late.len() == 1 && late[0].attempt > before;
            if !late.is_empty() && !allowed {
                for run in late {
                    violation(
                        out,
                        "superseded_started",
                        id,
                        format!(
                            "{} started {:.1} ms after {} answered {:?} (t_ack={})",
                            run.describe(),
                            (run.start - ack.t_ack) as f64 / 1000.0,
                            ack.op,
                            ack.answer,
                            ack.t_ack
                        ),
                    );
                }
            }
        }
    }
}

fn completed_after_abort(model: &Model, out: &mut Vec<Violation>) {
    for (id, acks) in &model.acks {
        for a in acks {
            let aborted = match a.answer {
                Answer::AbortSignalled { generation, .. } => generation,
                Answer::AbortedRunning { aborted, .. } => aborted,
                _ => continue,
            };
            let seen = model
                .observations
                .get(id)
                .into_iter()
                .flatten()
                .find(|o| o.generation == Some(aborted) && o.status == "completed");
            if let Some(o) = seen {
                violation(
                    out,
                    "completed_after_abort",
                    id,
                    format!(
                        "g{aborted}: {} answered {:?} at t={}, yet {} saw it completed at t={} (finished {:?} ms)",
                        a.op, a.answer, a.t_ack, o.client, o.t, o.finished_ms
                    ),
                );
            }
        }
    }
}

fn never_ran(model: &Model, out: &mut Vec<Violation>) {
    for (id, acks) in &model.acks {
        for a in acks {
            let Some(generation) = a.answer.created() else {
                continue;
            };
            let spared = acks.iter().any(|b| match &b.answer {
                Answer::Removed { generation: g } => *g == generation,
                Answer::AbortSignalled {
                    generation: g,
                    removed_successor,
                } => *g == generation || *removed_successor == Some(generation),
                Answer::AbortedRunning {
                    aborted, replaced, ..
                } => *aborted == generation || *replaced == Some(generation),
                Answer::QueuedAfter { replaced, .. } => *replaced == Some(generation),
                Answer::Replaced { generation: n, .. } => *n > generation,
                // A failed cancel or replace may have removed it.
                Answer::Error { .. } => {
                    b.t_ack > a.t_call
                        && (b.op.starts_with("cancel") || b.op.starts_with("replace"))
                }
                _ => false,
            });
            if spared || model.runs_of(id).any(|r| r.generation == generation) {
                continue;
            }
            // A later cancel of the whole id that answered only for an older,
            // running generation while this one waited behind it.
            let silent = acks.iter().find(|b| {
                b.t_call > a.t_ack
                    && b.asked_generation.is_none()
                    && matches!(b.answer, Answer::AbortSignalled { generation: r, .. } if r < generation)
            });
            if let Some(b) = silent {
                violation(
                    out,
                    "successor_removed_silently",
                    id,
                    format!(
                        "g{generation} ({} answered {:?} at t={}) never started: {} at t={} answered {:?} and said nothing of it",
                        a.op, a.answer, a.t_ack, b.op, b.t_ack, b.answer
                    ),
                );
                continue;
            }
            violation(
                out,
                "never_ran",
                id,
                format!(
                    "g{generation} ({} answered {:?} at t={}) never started, and no reply cancelled or replaced it",
                    a.op, a.answer, a.t_ack
                ),
            );
        }
    }
}

fn no_outcome(model: &Model, out: &mut Vec<Violation>) {
    for (id, observations) in &model.observations {
        for o in observations.iter().filter(|o| o.last) {
            if matches!(o.status.as_str(), "deferred" | "queued" | "running") {
                violation(
                    out,
                    "no_outcome",
                    id,
                    format!(
                        "after the quiet period g{:?} is still {} (attempts {})",
                        o.generation, o.status, o.attempts
                    ),
                );
            }
        }
    }
}

fn outcome_owner(model: &Model, out: &mut Vec<Violation>) {
    let mut reported: BTreeSet<(String, u64, &'static str)> = BTreeSet::new();
    for (id, observations) in &model.observations {
        for o in observations {
            let (Some(generation), Some(finished)) = (o.generation, o.finished_ms) else {
                continue;
            };
            if !matches!(o.status.as_str(), "completed" | "failed" | "cancelled") {
                continue;
            }
            let finished_us = finished * 1000 + 1000;
            let runs: Vec<&Run> = model
                .runs_of(id)
                .filter(|r| r.generation == generation)
                .collect();
            for run in runs.iter().filter(|r| r.start > finished_us) {
                if reported.insert((id.clone(), generation, "ran_after_outcome")) {
                    violation(
                        out,
                        "ran_after_outcome",
                        id,
                        format!(
                            "{} started {:.1} ms after g{generation} was recorded {} (seen by {})",
                            run.describe(),
                            (run.start - finished * 1000) as f64 / 1000.0,
                            o.status,
                            o.client
                        ),
                    );
                }
            }
            if o.status != "completed" {
                continue;
            }
            let owner = runs.iter().find(|r| {
                r.attempt == o.attempts
                    && r.result == "ok"
                    && r.end.is_some_and(|e| e <= finished_us)
            });
            if owner.is_none() && reported.insert((id.clone(), generation, "owner")) {
                let described: Vec<String> = runs.iter().map(|r| r.describe()).collect();
                violation(
                    out,
                    "outcome_not_from_owner",
                    id,
                    format!(
                        "g{generation} recorded completed at {finished} ms with attempts {}, but no run of that attempt returned ok before then; runs: {described:?}",
                        o.attempts
                    ),
                );
            }
        }
    }
}
