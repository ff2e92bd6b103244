//! What a run did, in numbers (histories, operations by kind and answer,
//! faults by kind, runs, violations by rule), and the slice of history behind
//! each violation: every event of the ids involved, plus the faults around it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::checker::Violation;
use super::event::{Answer, Event};

/// Counts of one or more runs.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub histories: usize,
    pub seeds: Vec<u64>,
    /// `op -> answer kind -> count`.
    pub operations: BTreeMap<String, BTreeMap<String, usize>>,
    pub faults: BTreeMap<String, usize>,
    pub runs: usize,
    pub violations: BTreeMap<&'static str, usize>,
    /// (seed, violation) of every run.
    pub found: Vec<(u64, Violation)>,
}

fn answer_kind(a: &Answer) -> String {
    let text = serde_json::to_value(a)
        .ok()
        .and_then(|v| v["k"].as_str().map(str::to_string))
        .unwrap_or_default();
    text
}

impl Report {
    /// Adds one history and what the checker found in it.
    pub fn add(&mut self, seed: u64, events: &[Event], violations: &[Violation]) {
        self.histories += 1;
        self.seeds.push(seed);
        for e in events {
            match e {
                Event::Ack(a) => {
                    *self
                        .operations
                        .entry(a.op.clone())
                        .or_default()
                        .entry(answer_kind(&a.answer))
                        .or_default() += 1
                }
                Event::Fault(f) if f.kind != "gone" => {
                    *self.faults.entry(f.kind.clone()).or_default() += 1
                }
                Event::Start(_) => self.runs += 1,
                _ => {}
            }
        }
        for v in violations {
            *self.violations.entry(v.rule).or_default() += 1;
            self.found.push((seed, v.clone()));
        }
    }

    pub fn operation_count(&self) -> usize {
        self.operations.values().flat_map(|m| m.values()).sum()
    }

    /// A few lines: histories, operations, faults, runs, violations.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "histories: {} (seeds {:?}); operations: {}; runs: {}",
            self.histories,
            self.seeds,
            self.operation_count(),
            self.runs
        );
        for (op, answers) in &self.operations {
            let _ = writeln!(s, "  {op}: {answers:?}");
        }
        let _ = writeln!(
            s,
            "faults injected: {} {:?}",
            self.faults.values().sum::<usize>(),
            self.faults
        );
        let _ = writeln!(
            s,
            "violations: {} {:?}",
            self.violations.values().sum::<usize>(),
            self.violations
        );
        for (seed, v) in self.found.iter().take(20) {
            let _ = writeln!(s, "  seed {seed}: {} {:?}: {}", v.rule, v.ids, v.detail);
        }
        s
    }
}

/// The events of the ids of `violations` (and faults from 3 s before the
/// first to the last), one per line, at most `limit` lines.
pub fn slice(events: &[Event], violations: &[Violation], limit: usize) -> String {
    let ids: Vec<&str> = violations
        .iter()
        .flat_map(|v| v.ids.iter().map(String::as_str))
        .collect();
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.id().is_some_and(|id| ids.contains(&id)))
        .collect();
    mine.sort_by_key(|e| e.time());
    let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
        return String::new();
    };
    let (from, to) = (first.time() - 3_000_000, last.time());
    let mut all: Vec<&Event> = mine.clone();
    all.extend(
        events
            .iter()
            .filter(|e| matches!(e, Event::Fault(_)) && (from..=to).contains(&e.time())),
    );
    all.sort_by_key(|e| e.time());
    let base = all.first().map(|e| e.time()).unwrap_or(0);
    let mut s = String::new();
    for e in all.iter().take(limit) {
        let line = serde_json::to_string(e).unwrap_or_default();
        let _ = writeln!(s, "  +{:>9.3} ms {line}", (e.time() - base) as f64 / 1000.0);
    }
    if all.len() > limit {
        let _ = writeln!(s, "  ... {} more events", all.len() - limit);
    }
    s
}
