//! The history indexed for the checker: each run's start matched with its
//! end (or with its worker's going away), the acknowledgements and
//! observations by id, and the injected faults.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::event::{Ack, Event, Observation};

/// One run, its start matched with its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub worker: String,
    pub id: String,
    pub generation: u64,
    pub attempt: u32,
    pub scheduled_ms: i64,
    pub start: i64,
    /// When it ended: its end event, else when its worker went away.
    pub end: Option<i64>,
    /// `ok`, `retry`, `permanent`, `dropped`, or `gone` (its process ended).
    pub result: String,
}

impl Run {
    pub fn end_or_max(&self) -> i64 {
        self.end.unwrap_or(i64::MAX)
    }

    pub fn describe(&self) -> String {
        let end = self
            .end
            .map(|e| format!("{:.1} ms", (e - self.start) as f64 / 1000.0))
            .unwrap_or_else(|| "never ended".into());
        format!(
            "{}/g{}/a{} on {} from t={} for {end} ({})",
            self.id, self.generation, self.attempt, self.worker, self.start, self.result
        )
    }
}

/// The history, indexed.
#[derive(Default)]
pub struct Model {
    pub runs: Vec<Run>,
    pub acks: BTreeMap<String, Vec<Ack>>,
    pub observations: BTreeMap<String, Vec<Observation>>,
    /// Injected faults: (kind, target, from, to).
    pub faults: Vec<(String, String, i64, i64)>,
}

impl Model {
    pub fn build(events: &[Event]) -> Model {
        let mut gone: HashMap<&str, i64> = HashMap::new();
        for e in events {
            if let Event::Fault(f) = e {
                if f.kind == "gone" {
                    let t = gone.entry(f.target.as_str()).or_insert(f.t);
                    *t = (*t).min(f.t);
                }
            }
        }
        let mut model = Model::default();
        let mut open: HashMap<(String, String, u64, u32), Vec<usize>> = HashMap::new();
        let mut sorted: Vec<&Event> = events.iter().collect();
        sorted.sort_by_key(|e| e.time());
        for e in sorted {
            match e {
                Event::Start(s) => {
                    let key = (s.worker.clone(), s.id.clone(), s.generation, s.attempt);
                    open.entry(key).or_default().push(model.runs.len());
                    model.runs.push(Run {
                        worker: s.worker.clone(),
                        id: s.id.clone(),
                        generation: s.generation,
                        attempt: s.attempt,
                        scheduled_ms: s.scheduled_ms,
                        start: s.t,
                        end: None,
                        result: String::new(),
                    });
                }
                Event::End(end) => {
                    let key = (
                        end.worker.clone(),
                        end.id.clone(),
                        end.generation,
                        end.attempt,
                    );
                    if let Some(list) = open.get_mut(&key) {
                        if !list.is_empty() {
                            let i = list.remove(0);
                            model.runs[i].end = Some(end.t);
                            model.runs[i].result = end.result.clone();
                        }
                    }
                }
                Event::Ack(a) => model.acks.entry(a.id.clone()).or_default().push(a.clone()),
                Event::Observed(o) => model
                    .observations
                    .entry(o.id.clone())
                    .or_default()
                    .push(o.clone()),
                Event::Fault(f) => {
                    if f.kind != "gone" {
                        let to = f.until.unwrap_or(f.t);
                        model
                            .faults
                            .push((f.kind.clone(), f.target.clone(), f.t, to));
                    }
                }
            }
        }
        for run in &mut model.runs {
            if run.end.is_none() {
                if let Some(t) = gone.get(run.worker.as_str()) {
                    if *t >= run.start {
                        run.end = Some(*t);
                        run.result = "gone".into();
                    }
                }
            }
        }
        model
    }

    pub fn runs_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
        self.runs.iter().filter(move |r| r.id == id)
    }

    /// Whether a fault that can cost `run`'s worker its lease (on its
    /// process, its proxy, or Redis) overlapped the run.
    pub fn disturbed(&self, run: &Run) -> bool {
        let end = run.end_or_max();
        self.faults.iter().any(|(_, target, from, to)| {
            let hits = target == "redis"
                || target == &run.worker
                || target.starts_with(&format!("{}:", run.worker));
            hits && *from <= end && *to >= run.start
        })
    }

    pub fn ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self.runs.iter().map(|r| r.id.clone()).collect();
        ids.extend(self.acks.keys().cloned());
        ids
    }
}
