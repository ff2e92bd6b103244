//! Appends events to a history: in memory (the test process), and for worker
//! processes also to a JSON-lines file, one `write` per line, so a SIGKILL
//! loses at most the line being written. [`load`] reads such a file back.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use scheduler::JobContext;

use super::event::{now_us, End, Event, Start};

/// A shared, append-only history.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    file: Option<Arc<Mutex<File>>>,
}

impl Recorder {
    /// A recorder that also appends every event to `path` (created or truncated).
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        Ok(Recorder {
            events: Arc::default(),
            file: Some(Arc::new(Mutex::new(File::create(path)?))),
        })
    }

    pub fn record(&self, event: Event) {
        if let Some(file) = &self.file {
            if let Ok(mut line) = serde_json::to_vec(&event) {
                line.push(b'\n');
                // One write per line, no buffering: a killed process leaves
                // every earlier line complete.
                let _ = file.lock().unwrap().write_all(&line);
            }
        }
        self.events.lock().unwrap().push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Records the start of a run; the guard records its end, as `dropped`
    /// when it is dropped before [`RunGuard::finish`] (an aborted future).
    pub fn start(&self, ctx: &JobContext, worker: &str) -> RunGuard {
        self.record(Event::Start(Start {
            worker: worker.to_string(),
            id: ctx.job_id().to_string(),
            generation: ctx.generation(),
            attempt: ctx.attempt(),
            scheduled_ms: ctx.scheduled_at().timestamp_millis(),
            t: now_us(),
        }));
        RunGuard {
            recorder: self.clone(),
            end: Some(End {
                worker: worker.to_string(),
                id: ctx.job_id().to_string(),
                generation: ctx.generation(),
                attempt: ctx.attempt(),
                result: String::new(),
                t: 0,
            }),
        }
    }
}

/// Records the end of one run exactly once.
pub struct RunGuard {
    recorder: Recorder,
    end: Option<End>,
}

impl RunGuard {
    /// The task body returns now with `result` (`ok`, `retry`, `permanent`).
    pub fn finish(mut self, result: &str) {
        self.close(result);
    }

    fn close(&mut self, result: &str) {
        if let Some(mut end) = self.end.take() {
            end.result = result.to_string();
            end.t = now_us();
            self.recorder.record(Event::End(end));
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.close("dropped");
    }
}

/// The events of a JSON-lines history file; a torn last line is skipped.
pub fn load(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
