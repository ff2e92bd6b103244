//! What the backends store of a periodic schedule, what they are asked to do
//! with it, and the ids of its tick jobs.
//!
//! A schedule is one entry of the namespace's `{ns}:schedules` hash (the
//! in-memory backend keeps the same fields). Each tick is an ordinary job
//! whose id names the schedule and the instant, `schedule:<name>:<unix ms>`:
//! dedup, leases, retries, cancel and fencing apply to it unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::error::Error;

/// The prefix of every tick job's id. Reserved: an enqueue with such an id is
/// refused ([`Error::InvalidJobId`]).
pub(crate) const TICK_PREFIX: &str = "schedule:";

/// The longest schedule name accepted, in bytes (the tick ids it makes stay
/// under the job id limit).
pub(crate) const MAX_SCHEDULE_NAME_BYTES: usize = 200;

/// The id of the tick of schedule `name` at `tick_ms`.
pub(crate) fn tick_id(name: &str, tick_ms: i64) -> String {
    format!("{TICK_PREFIX}{name}:{tick_ms}")
}

/// The schedule and the instant of a tick job, read from its id (the form
/// [`tick_id`] writes); `None` for a job that is not a tick.
pub(crate) fn parse_tick_id(job_id: &str) -> Option<(&str, DateTime<Utc>)> {
    let rest = job_id.strip_prefix(TICK_PREFIX)?;
    let (name, ms) = rest.rsplit_once(':')?;
    Some((name, DateTime::from_timestamp_millis(ms.parse().ok()?)?))
}

/// The instant a tick job was planned for, read from its id; `None` for a job
/// that is not a tick.
pub(crate) fn planned_tick(job_id: &str) -> Option<DateTime<Utc>> {
    parse_tick_id(job_id).map(|(_, tick)| tick)
}

/// Refuses a job id of the reserved tick form for a user's enqueue.
pub(crate) fn refuse_tick_id(job_id: &str) -> Result<(), Error> {
    if job_id.starts_with(TICK_PREFIX) {
        return Err(Error::InvalidJobId {
            id: job_id.chars().take(64).collect(),
            reason: "ids starting with `schedule:` are reserved for the ticks of periodic tasks",
        });
    }
    Ok(())
}

/// Checks a schedule name: 1 to 200 bytes, no control characters, no `{` or `}`.
pub(crate) fn validate_schedule_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("a schedule name is empty")
    } else if name.len() > MAX_SCHEDULE_NAME_BYTES {
        Some("a schedule name is longer than 200 bytes")
    } else if name.chars().any(char::is_control) {
        Some("a schedule name contains a control character")
    } else if name.contains(['{', '}']) {
        Some("a schedule name contains `{` or `}`, which Redis Cluster reads as a hash tag")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidSchedule {
            input: name.chars().take(64).collect(),
            reason: reason.to_string(),
        }),
    }
}

/// Where a schedule was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleSource {
    /// By `#[task(cron = ...)]`: upserted by each process at start-up, named
    /// after its task.
    Code,
    /// By [`Scheduler::schedule`](crate::Scheduler::schedule) at run time.
    Runtime,
}

impl ScheduleSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Code => "code",
            ScheduleSource::Runtime => "runtime",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "code" => Some(ScheduleSource::Code),
            "runtime" => Some(ScheduleSource::Runtime),
            _ => None,
        }
    }
}

/// The part of a schedule its owner writes: what each tick runs and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Definition {
    pub(crate) task: String,
    /// The tick jobs' arguments, as stored for jobs (JSON).
    pub(crate) payload: Vec<u8>,
    pub(crate) max_attempts: u32,
    /// `Schedule::spec`.
    pub(crate) spec: String,
    pub(crate) source: ScheduleSource,
    /// A hash of task, payload, attempts and spec (and queue, when not the
    /// default): two processes agree on a definition when their versions match.
    pub(crate) version: String,
    /// The queue its ticks go to; `None` for the default queue.
    pub(crate) queue: Option<String>,
}

impl Definition {
    pub(crate) fn new(
        task: &str,
        payload: Vec<u8>,
        max_attempts: u32,
        spec: String,
        source: ScheduleSource,
    ) -> Self {
        let text = format!(
            "{task}\n{max_attempts}\n{spec}\n{}",
            String::from_utf8_lossy(&payload)
        );
        let version = fred::util::sha1_hash(&text)[..16].to_string();
        Definition {
            task: task.to_string(),
            payload,
            max_attempts,
            spec,
            source,
            version,
            queue: None,
        }
    }

    /// Its ticks go to `queue` (the default queue leaves it as it is).
    pub(crate) fn in_queue(mut self, queue: &str) -> Self {
        if queue != crate::DEFAULT_QUEUE {
            let text = format!("{}\n{queue}", self.version);
            self.version = fred::util::sha1_hash(&text)[..16].to_string();
            self.queue = Some(queue.to_string());
        }
        self
    }
}

/// A schedule as stored: its definition and the planner's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) name: String,
    pub(crate) definition: Definition,
    pub(crate) paused: bool,
    /// Ticks up to this instant (ms) are planned, or were deliberately not;
    /// `None` before the first planning.
    pub(crate) cursor_ms: Option<i64>,
    /// The generation of the tick job created at the cursor; 0 when none was.
    pub(crate) cursor_generation: u64,
}

/// The Redis form of a stored schedule: a JSON object of strings (numbers as
/// text, so that Lua's cjson never formats them as floats).
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct StoredForm {
    task: String,
    payload: String,
    max_attempts: String,
    spec: String,
    source: String,
    version: String,
    paused: String,
    cursor: String,
    cursor_gen: String,
    #[serde(default)]
    queue: String,
}

impl Stored {
    /// Reads the Redis form of schedule `name`.
    pub(crate) fn from_json(name: &str, json: &[u8]) -> Result<Stored, Error> {
        let corrupt = |what: &str| Error::Corrupt(format!("schedule {name:?}: {what}"));
        let form: StoredForm =
            serde_json::from_slice(json).map_err(|e| corrupt(&format!("not a definition: {e}")))?;
        let number = |text: &str, what: &str| -> Result<i64, Error> {
            text.parse().map_err(|_| corrupt(what))
        };
        Ok(Stored {
            name: name.to_string(),
            definition: Definition {
                task: form.task,
                payload: form.payload.into_bytes(),
                max_attempts: number(&form.max_attempts, "max_attempts")? as u32,
                spec: form.spec,
                source: ScheduleSource::parse(&form.source).ok_or_else(|| corrupt("source"))?,
                version: form.version,
                queue: Some(form.queue).filter(|q| !q.is_empty()),
            },
            paused: form.paused == "1",
            cursor_ms: match form.cursor.as_str() {
                "" => None,
                text => Some(number(text, "cursor")?),
            },
            cursor_generation: number(&form.cursor_gen, "cursor_gen")? as u64,
        })
    }
}

/// What [`put`](crate::backend::Backend::put_schedule) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    /// No schedule had the name.
    Created,
    /// One with another version was replaced in place (its tick that had not
    /// started removed).
    Replaced,
    /// The same version was stored already.
    Unchanged,
}

/// One planning step of one schedule: atomic, and only if the stored
/// schedule is still the one the planner read.
#[derive(Clone, Debug)]
pub(crate) struct PlanCall {
    pub(crate) name: String,
    /// The version the plan was computed for.
    pub(crate) version: String,
    /// The cursor the plan was computed from.
    pub(crate) expected_cursor_ms: Option<i64>,
    /// Remove the tick job at the expected cursor if it has not started (a missed tick).
    pub(crate) cancel_cursor_tick: bool,
    /// The tick jobs to create: (tick ms, nonce), each due at its tick.
    pub(crate) ticks: Vec<(i64, String)>,
    /// The cursor to store.
    pub(crate) new_cursor_ms: i64,
}

/// Why a planning step changed nothing, or what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlanOutcome {
    /// The ticks were created (those whose id was free) and the cursor moved.
    Planned {
        created: u32,
        /// The generation of the missed tick removed, or 0.
        cancelled: u64,
    },
    /// The schedule was removed.
    Gone,
    /// The schedule was redefined since it was read.
    StaleVersion,
    /// The schedule is paused.
    Paused,
    /// Another planner moved the cursor first.
    CursorMoved,
}

/// What a pause, resume or remove found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScheduleChange {
    /// Done; the generation of the pending tick removed, or 0.
    Done { cancelled: u64 },
    /// It was in that state already.
    Unchanged,
    /// No schedule has the name.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_ids_name_the_schedule_and_the_instant() {
        let id = tick_id("daily:report", 1_780_000_000_000);
        assert_eq!(id, "schedule:daily:report:1780000000000");
        assert_eq!(
            planned_tick(&id).map(|t| t.timestamp_millis()),
            Some(1_780_000_000_000)
        );
        assert_eq!(
            parse_tick_id(&id).map(|(name, _)| name),
            Some("daily:report")
        );
        assert_eq!(planned_tick("report-1"), None);
        assert_eq!(parse_tick_id("report-1"), None);
        assert_eq!(planned_tick("schedule:x:soon"), None);
        assert!(refuse_tick_id(&id).is_err());
        assert!(refuse_tick_id("schedules-are-fine").is_ok());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_schedule_name("nightly").is_ok());
        for bad in ["", "a{b}", "a\nb"] {
            assert!(
                matches!(
                    validate_schedule_name(bad),
                    Err(Error::InvalidSchedule { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_schedule_name(&"x".repeat(201)).is_err());
    }

    #[test]
    fn the_stored_form_reads_back() {
        let json = br#"{"task":"t","payload":"[1]","max_attempts":"3","spec":"every|1000|UTC|skip",
            "source":"code","version":"abc","paused":"0","cursor":"1000","cursor_gen":"7"}"#;
        let stored = Stored::from_json("n", json).expect("valid");
        assert_eq!(stored.definition.payload, b"[1]");
        assert_eq!(stored.cursor_ms, Some(1000));
        assert_eq!(stored.cursor_generation, 7);
        assert_eq!(stored.definition.source, ScheduleSource::Code);
        assert!(Stored::from_json("n", b"{}").is_err());
    }

    #[test]
    fn versions_change_with_the_definition() {
        let a = Definition::new("t", b"[]".to_vec(), 3, "s".into(), ScheduleSource::Code);
        let b = Definition::new("t", b"[1]".to_vec(), 3, "s".into(), ScheduleSource::Code);
        let c = Definition::new("t", b"[]".to_vec(), 3, "s".into(), ScheduleSource::Runtime);
        assert_ne!(a.version, b.version);
        // The source is not part of what a tick runs.
        assert_eq!(a.version, c.version);
        assert_eq!(a.version.len(), 16);
    }
}
