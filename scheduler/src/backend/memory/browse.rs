//! browse.lua: one page of the jobs in a state, from the index that holds
//! them.

use std::ops::Bound;

use crate::api::listing::{cursor, JobPage, JobQuery, ListState, SCAN_PER_JOB};
use crate::backend::memory::inspection::{active_info, dead_info, outcome_info, pending_info};
use crate::backend::memory::MemoryBackend;
use crate::{Error, JobInfo};

impl MemoryBackend {
    pub(super) fn browse_now(&self, query: &JobQuery) -> Result<JobPage, Error> {
        let position = query.position()?;
        let tx = self.begin();
        let now = tx.now;
        let s = &tx.s;
        // The state's index entries in its order, after the cursor.
        let after = |entry: &&(i64, String), descending: bool| match &position {
            None => true,
            Some((score, id)) if descending => (entry.0 as f64, &entry.1) < (*score, id),
            Some((score, id)) => (entry.0 as f64, &entry.1) > (*score, id),
        };
        let entries: Vec<&(i64, String)> = match query.state {
            ListState::Deferred => s
                .due
                .ordered
                .range((
                    Bound::Excluded((now, String::from("\u{10FFFF}"))),
                    Bound::Unbounded,
                ))
                .filter(|e| e.0 > now && after(e, false))
                .collect(),
            ListState::Queued => {
                // Due entries and the parks' (jobs waiting for a slot or a
                // worker), merged as browse.lua merges them.
                let mut queued: Vec<&(i64, String)> = s
                    .due
                    .ordered
                    .iter()
                    .take_while(|e| e.0 <= now)
                    .chain(s.parks.values().flat_map(|park| park.ordered.iter()))
                    .filter(|e| after(e, false))
                    .collect();
                queued.sort();
                queued
            }
            ListState::Running => s
                .leases
                .ordered
                .iter()
                .filter(|e| after(e, false))
                .collect(),
            ListState::Finished => s
                .results_exp
                .ordered
                .iter()
                .rev()
                .filter(|e| after(e, true))
                .collect(),
            ListState::DeadLettered => s
                .dead_order
                .ordered
                .iter()
                .rev()
                .filter(|e| after(e, true))
                .collect(),
        };
        let cap = query.limit * SCAN_PER_JOB;
        let mut page = JobPage {
            jobs: Vec::new(),
            unreadable: Vec::new(),
            next: None,
        };
        let mut examined = 0;
        for &&(score, ref id) in &entries {
            if page.jobs.len() >= query.limit || examined >= cap {
                break;
            }
            examined += 1;
            let info: Option<JobInfo> = match query.state {
                ListState::Deferred | ListState::Queued => s
                    .pending
                    .get(id)
                    .map(|r| pending_info(id, r, Some(score), now)),
                ListState::Running => s.active.get(id).map(|r| active_info(id, r, Some(score))),
                ListState::Finished => s
                    .results
                    .get(id)
                    .filter(|_| score > now)
                    .filter(|r| query.outcome.is_none_or(|o| o == r.state))
                    .map(|r| outcome_info(id, r)),
                ListState::DeadLettered => s.dead.get(id).map(|e| dead_info(id, e)),
            };
            if let Some(info) = info
                .filter(|i| query.task.as_ref().is_none_or(|t| *t == i.task))
                .filter(|i| query.queue.is_none() || query.queue == i.queue)
            {
                page.jobs.push(info);
            }
        }
        // As browse.lua: the cursor is the last entry looked at, when more follow.
        if examined > 0 && examined < entries.len() {
            let (score, id) = entries[examined - 1];
            page.next = Some(cursor(*score as f64, id));
        }
        drop(tx);
        Ok(page)
    }
}
