//! Listing the jobs of a namespace by state, one page at a time
//! ([`Scheduler::list`](crate::Scheduler::list)): what the operator tools
//! read.

use crate::api::error::Error;
use crate::api::job::JobInfo;
use crate::FinishedState;

/// The largest page [`Scheduler::list`](crate::Scheduler::list) returns.
pub const MAX_PAGE: usize = 1000;

/// How many index entries one page looks at, at most, per job asked for: a
/// filter that matches few jobs gives a short page (with a cursor to go on
/// from) instead of a long walk.
pub(crate) const SCAN_PER_JOB: usize = 10;

/// Which jobs a listing shows, each read from the index that holds them, in
/// its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListState {
    /// Due later, soonest first. A job waiting for a running job of its id
    /// is listed here at that job's lease expiry, with status `Queued`.
    Deferred,
    /// Due and waiting for a worker, longest waiting first.
    Queued,
    /// Running, soonest lease expiry first (`JobInfo::lease_until`).
    Running,
    /// Ended and still kept (`keep_result`): completed, failed or
    /// cancelled, most recent first.
    Finished,
    /// In the dead letter, most recent first; `last_error` is the reason.
    DeadLettered,
}

impl ListState {
    /// Its name: `deferred`, `queued`, `running`, `finished`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListState::Deferred => "deferred",
            ListState::Queued => "queued",
            ListState::Running => "running",
            ListState::Finished => "finished",
            ListState::DeadLettered => "dead",
        }
    }

    /// Reads a name of [`as_str`](Self::as_str) (`dead-lettered` too).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "deferred" => ListState::Deferred,
            "queued" => ListState::Queued,
            "running" => ListState::Running,
            "finished" => ListState::Finished,
            "dead" | "dead-lettered" | "dead_lettered" => ListState::DeadLettered,
            _ => return None,
        })
    }
}

/// One page to list ([`Scheduler::list`](crate::Scheduler::list)).
///
/// ```
/// use scheduler::{JobQuery, ListState};
///
/// let first = JobQuery::new(ListState::Deferred).task("send_reminder").limit(50);
/// assert_eq!(first.limit, 50);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobQuery {
    /// Which jobs.
    pub state: ListState,
    /// Only jobs of this task.
    pub task: Option<String>,
    /// [`ListState::Finished`] only: only jobs that ended this way.
    pub outcome: Option<FinishedState>,
    /// At most this many jobs (1 to [`MAX_PAGE`]).
    pub limit: usize,
    /// Where to go on from: the [`JobPage::next`] of the page before.
    pub cursor: Option<String>,
    /// Only jobs of this queue (not for [`ListState::Finished`]: an outcome
    /// does not keep its queue).
    pub queue: Option<String>,
}

impl JobQuery {
    /// The first page of 50 jobs in `state`.
    pub fn new(state: ListState) -> Self {
        JobQuery {
            state,
            task: None,
            outcome: None,
            limit: 50,
            cursor: None,
            queue: None,
        }
    }

    /// Only jobs of this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only jobs of this task.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    /// Only finished jobs that ended this way.
    pub fn outcome(mut self, outcome: FinishedState) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// At most this many jobs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Goes on after the page that returned this cursor.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// The cursor read back: the score and id of the last entry looked at.
    /// The score is a number (a due instant keeps its microseconds as a
    /// fraction of a millisecond).
    pub(crate) fn position(&self) -> Result<Option<(f64, String)>, Error> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        cursor
            .split_once(':')
            .and_then(|(score, id)| {
                let score = score.parse::<f64>().ok().filter(|s| s.is_finite())?;
                Some((score, id.to_string()))
            })
            .filter(|(_, id)| !id.is_empty())
            .map(Some)
            .ok_or_else(|| Error::InvalidCursor(cursor.chars().take(64).collect()))
    }

    /// Checks the limits before anything is read.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(Error::InvalidQuery(format!(
                "limit {} is not between 1 and {MAX_PAGE}",
                self.limit
            )));
        }
        if self.outcome.is_some() && self.state != ListState::Finished {
            return Err(Error::InvalidQuery(format!(
                "an outcome filter lists finished jobs, not {} ones",
                self.state.as_str()
            )));
        }
        if let Some(queue) = &self.queue {
            if self.state == ListState::Finished {
                return Err(Error::InvalidQuery(
                    "a queue filter lists pending, running or dead-lettered jobs: a finished job's outcome does not keep its queue".into(),
                ));
            }
            crate::api::routing::validate_queue_name(queue)?;
        }
        self.position().map(drop)
    }
}

/// Writes the cursor of a page's last entry (a whole score prints as an
/// integer, a fraction as the shortest text that reads back the same).
pub(crate) fn cursor(score: f64, id: &str) -> String {
    format!("{score}:{id}")
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobPage {
    /// The jobs, in the state's order (see [`ListState`]).
    pub jobs: Vec<JobInfo>,
    /// The ids of entries whose record could not be read (inspect them
    /// with [`info`](crate::Scheduler::info); a claim dead-letters such a
    /// job with the reason).
    pub unreadable: Vec<String>,
    /// Where the next page starts; `None` at the end. A page can be shorter
    /// than the limit and still have a next one (a filter that matched few
    /// of the entries it looked at).
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_typed_error() {
        let query = JobQuery::new(ListState::Queued).after(cursor(1700.0, "a:b"));
        assert_eq!(query.cursor.as_deref(), Some("1700:a:b"));
        assert_eq!(
            query.position().expect("read"),
            Some((1700.0, "a:b".into()))
        );
        let fine = 1_796_106_812_802.456;
        let query = JobQuery::new(ListState::Queued).after(cursor(fine, "d2"));
        assert_eq!(query.position().expect("read"), Some((fine, "d2".into())));
        for bad in ["", "x:y", "12", "12:", "inf:a", "NaN:a"] {
            let query = JobQuery::new(ListState::Queued).after(bad);
            assert!(
                matches!(query.check(), Err(Error::InvalidCursor(_))),
                "{bad:?}"
            );
        }
        assert!(JobQuery::new(ListState::Queued).limit(0).check().is_err());
        assert!(JobQuery::new(ListState::Queued)
            .queue("emails")
            .check()
            .is_ok());
        assert!(matches!(
            JobQuery::new(ListState::Finished).queue("emails").check(),
            Err(Error::InvalidQuery(_))
        ));
        assert!(matches!(
            JobQuery::new(ListState::Queued).queue("two words").check(),
            Err(Error::InvalidQueue { .. })
        ));
        assert!(JobQuery::new(ListState::Queued)
            .limit(MAX_PAGE + 1)
            .check()
            .is_err());
        assert!(JobQuery::new(ListState::Queued)
            .outcome(FinishedState::Failed)
            .check()
            .is_err());
        assert!(JobQuery::new(ListState::Finished)
            .outcome(FinishedState::Failed)
            .check()
            .is_ok());
        for state in [
            ListState::Deferred,
            ListState::Queued,
            ListState::Running,
            ListState::Finished,
            ListState::DeadLettered,
        ] {
            assert_eq!(ListState::parse(state.as_str()), Some(state));
        }
    }
}
