//! Wake-up, abort and schedule notices from the backend: an abort stops the
//! running attempt it names, or is remembered for a claim still on its way;
//! a change of the schedules wakes the planner.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use crate::backend::Notice;
use crate::worker::executor::StopReason;
use crate::worker::{Worker, EARLY_ABORTS_CAP};

impl Worker {
    /// Wake-ups, abort signals and schedule changes from the backend.
    pub(super) async fn listen(self: Arc<Self>, mut notices: mpsc::Receiver<Notice>) {
        loop {
            tokio::select! {
                _ = self.stop_all.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(Notice::Wake) => self.wake.notify_one(),
                    Some(Notice::Abort { generation, id }) => self.abort_local(&id, generation),
                    Some(Notice::Schedules) => self.planner.poke(),
                    None => return,
                },
            }
        }
    }

    pub(super) fn abort_local(&self, id: &str, generation: u64) {
        let Ok(mut jobs) = self.jobs.lock() else {
            return;
        };
        if let Some(job) = jobs.by_id.get(id).filter(|j| j.generation == generation) {
            if !job.finished {
                info!(
                    job_id = id,
                    generation, "abort requested, dropping the running job"
                );
                job.stop.stop(StopReason::Cancelled);
            }
            return;
        }
        // Perhaps a job of a claim whose reply has not arrived yet: remember it
        // for as long as such a reply can take.
        let now = Instant::now();
        let keep = (self.config.lease + self.backend.config().command_timeout) * 2;
        let early = &mut jobs.early_aborts;
        early.retain(|_, at| now.duration_since(*at) < keep);
        if early.len() >= EARLY_ABORTS_CAP {
            early.clear();
        }
        early.insert((id.to_string(), generation), now);
    }
}
