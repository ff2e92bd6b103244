//! Records what ran, in the test process (it does not share fate with Redis).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
pub struct Execution {
    pub job_id: String,
    pub generation: u64,
    pub attempt: u32,
    pub arg: String,
    pub scheduled_at: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// `ProbeArgs::big` as the task received it.
    pub big: Option<(u64, i64)>,
    /// The id of the worker process that ran it.
    pub pid: u32,
}

/// Shared log of executions; a dependency of the test tasks.
#[derive(Clone, Default)]
pub struct Probe {
    runs: Arc<Mutex<Vec<Execution>>>,
    /// Also print each start and end as a JSON line on stdout (child workers).
    print: bool,
}

impl Probe {
    /// A probe that also reports to its parent process through stdout.
    pub fn printing() -> Self {
        Probe {
            print: true,
            ..Probe::default()
        }
    }

    #[allow(clippy::print_stdout)]
    fn report(&self, event: &str, run: &Execution) {
        if self.print {
            let line = serde_json::json!({
                "event": event,
                "job_id": run.job_id,
                "generation": run.generation,
                "attempt": run.attempt,
                "pid": std::process::id(),
                "t": Utc::now().timestamp_micros(),
            });
            println!("{line}");
        }
    }

    pub fn start(&self, ctx: &scheduler::JobContext, args: &crate::tasks::ProbeArgs) -> usize {
        let arg = &args.arg;
        let mut runs = self.runs.lock().unwrap();
        let run = Execution {
            job_id: ctx.job_id().to_string(),
            generation: ctx.generation(),
            attempt: ctx.attempt(),
            arg: arg.to_string(),
            scheduled_at: ctx.scheduled_at(),
            start: Utc::now(),
            end: None,
            big: args.big,
            pid: std::process::id(),
        };
        self.report("start", &run);
        runs.push(run);
        runs.len() - 1
    }

    pub fn end(&self, index: usize) {
        if let Some(run) = self.runs.lock().unwrap().get_mut(index) {
            run.end = Some(Utc::now());
            self.report("end", run);
        }
    }

    pub fn runs(&self) -> Vec<Execution> {
        self.runs.lock().unwrap().clone()
    }

    pub fn runs_of(&self, job_id: &str) -> Vec<Execution> {
        self.runs()
            .into_iter()
            .filter(|r| r.job_id == job_id)
            .collect()
    }

    pub fn finished(&self) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.end.is_some())
            .count()
    }

    pub fn started(&self) -> usize {
        self.runs.lock().unwrap().len()
    }

    pub async fn wait_finished(&self, n: usize, limit: Duration) -> bool {
        crate::wait_until(limit, || self.finished() >= n).await
    }

    pub async fn wait_started(&self, n: usize, limit: Duration) -> bool {
        crate::wait_until(limit, || self.started() >= n).await
    }
}
