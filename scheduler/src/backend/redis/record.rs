//! The records the scripts store, field by field: the field numbers, named
//! as `common.lua` names them (`job::ATTEMPTS` is `JOB_ATTEMPTS`), and a job's
//! records as `inspect.lua` returns them, read into a [`JobInfo`].

use chrono::{DateTime, Utc};
use fred::types::Value;

use crate::api::listing::{cursor, JobPage};
use crate::backend::redis::reply;
use crate::backend::redis::reply::corrupt;
use crate::{Error, FinishedState, JobInfo, JobStatus, Waiting};

/// Declares one record's field numbers, 1-based as Lua indexes the record
/// (the same numbers as `common.lua`'s `local <PREFIX><FIELD> = <number>`),
/// and, for the test that pins the two together, the list of them by their
/// names in `common.lua`.
macro_rules! fields {
    (
        $(#[$doc:meta])*
        mod $record:ident = $prefix:literal {
            $($(#[$field_doc:meta])* $field:ident = $number:literal,)*
        }
    ) => {
        $(#[$doc])*
        // Every field is named, whether Rust reads it or not.
        #[allow(dead_code)]
        pub(crate) mod $record {
            $($(#[$field_doc])* pub(crate) const $field: usize = $number;)*

            /// Every field: its name in `common.lua` and its number.
            #[cfg(test)]
            pub(crate) const ALL: &[(&str, usize)] =
                &[$((concat!($prefix, stringify!($field)), $field)),*];
        }
    };
}

fields! {
    /// A job record, in `pending` or `active`: the fields up to [`job::NONCE`]
    /// are required, the rest optional.
    mod job = "JOB_" {
        TASK = 1,
        PAYLOAD = 2,
        /// With [`ATTEMPTS`], the fence token.
        GENERATION = 3,
        /// Attempts started: it only grows.
        ATTEMPTS = 4,
        /// Plus one per attempt released.
        MAX_ATTEMPTS = 5,
        ENQUEUED_MS = 6,
        /// Of the request that created the job.
        NONCE = 7,
        LAST_ERROR = 8,
        /// The run time of the current attempt.
        RUN_AT = 9,
        STARTED_MS = 10,
        WORKER = 11,
        /// 1 when asked to stop.
        CANCEL_REQUESTED = 12,
        /// A pending job's own run time while it waits for a running one.
        BLOCKED_RUN_AT = 13,
        /// 1 on a running job that a pending job with the same id waits for.
        REPLACEMENT_WAITS = 14,
        /// The last progress the running attempt reported (JSON).
        PROGRESS = 15,
        /// The W3C `traceparent` of the span that enqueued it.
        TRACE = 16,
        /// Its queue (absent: the default queue).
        QUEUE = 17,
        /// Its priority (absent: 0).
        PRIORITY = 18,
        /// The key of its per-key concurrency limit.
        LIMIT_KEY = 19,
        /// The park a pending job waits in (for a slot or a worker).
        PARKED = 20,
        /// On a running job: 1 when it holds its task's slot, 2 its key's too.
        SLOTS = 21,
    }
}

fields! {
    /// An outcome record, in `results`.
    mod outcome = "OUTCOME_" {
        GENERATION = 1,
        /// `completed` | `failed` | `cancelled`.
        STATE = 2,
        RESULT = 3,
        ERROR = 4,
        TASK = 5,
        ATTEMPTS = 6,
        ENQUEUED_MS = 7,
        STARTED_MS = 8,
        FINISHED_MS = 9,
        RUN_AT = 10,
        MAX_ATTEMPTS = 11,
        /// Of the request that created the job.
        NONCE = 12,
        /// The last progress its attempts reported (JSON, or empty).
        PROGRESS = 13,
    }
}

fields! {
    /// A dead-letter record, in `dead` (read by `dead_letters.lua` only).
    mod dead = "DEAD_" {
        TASK = 1,
        GENERATION = 2,
        ATTEMPTS = 3,
        REASON = 4,
        FAILED_MS = 5,
        /// The job's payload, or the unreadable record itself.
        PAYLOAD = 6,
        MAX_ATTEMPTS = 7,
        /// The job's queue, priority and limit key, so that a requeue keeps them.
        QUEUE = 8,
        PRIORITY = 9,
        LIMIT_KEY = 10,
    }
}

/// One record in `inspect.lua`'s reply: its kind, its score (lease expiry or
/// due time), and its fields as strings.
struct Section {
    kind: String,
    score: Option<i64>,
    fields: Vec<Value>,
}

impl Section {
    /// `{kind, score, 'ok' | 'corrupt', fields...}`; an error for a record
    /// the script could not read.
    fn read(value: Value, id: &str) -> Result<Section, Error> {
        let mut values = reply::array(value, "inspect section")?.into_iter();
        let mut next = || values.next().unwrap_or(Value::Null);
        let (kind, score, status) = (reply::string(&next()), next(), reply::string(&next()));
        if status != "ok" {
            return Err(Error::Corrupt(format!(
                "the {kind} record of job {id:?} is not readable"
            )));
        }
        Ok(Section {
            kind,
            score: reply::opt_int(&score),
            fields: values.collect(),
        })
    }

    /// The field numbered `number` (as in [`job`] and [`outcome`]).
    fn value(&self, number: usize) -> Option<&Value> {
        number.checked_sub(1).and_then(|i| self.fields.get(i))
    }

    fn int(&self, number: usize) -> Option<i64> {
        self.value(number).and_then(reply::opt_int)
    }

    fn string(&self, number: usize) -> String {
        self.value(number).map(reply::string).unwrap_or_default()
    }

    /// The field's text, `None` when empty (absent).
    fn text(&self, number: usize) -> Option<String> {
        Some(self.string(number)).filter(|s| !s.is_empty())
    }

    /// The field's JSON, `None` when empty (absent) or not JSON.
    fn json(&self, number: usize) -> Option<serde_json::Value> {
        self.text(number)
            .and_then(|text| serde_json::from_str(&text).ok())
    }

    fn time(&self, number: usize) -> Option<DateTime<Utc>> {
        self.value(number).and_then(reply::opt_time)
    }

    /// A running (`active`) or pending job record.
    fn job(&self, id: &str, now: i64) -> JobInfo {
        let blocked = self.int(job::BLOCKED_RUN_AT);
        let limit_key = self.text(job::LIMIT_KEY);
        let waiting = self
            .text(job::PARKED)
            .and_then(|park| Waiting::from_park(&park, limit_key.as_deref()));
        let (status, run_at) = if self.kind == "active" {
            (
                JobStatus::Running {
                    attempt: self.int(job::ATTEMPTS).unwrap_or(0) as u32,
                    worker: self.string(job::WORKER),
                },
                self.time(job::RUN_AT),
            )
        } else {
            let run_at_ms = blocked.or(self.score).unwrap_or(now);
            let at = crate::clock::time_from_ms(run_at_ms);
            if run_at_ms <= now || blocked.is_some() || waiting.is_some() {
                (JobStatus::Queued { run_at: at }, Some(at))
            } else {
                (JobStatus::Deferred { run_at: at }, Some(at))
            }
        };
        JobInfo {
            job_id: id.to_string(),
            task: self.string(job::TASK),
            generation: self.int(job::GENERATION).unwrap_or(0) as u64,
            status,
            attempts: self.int(job::ATTEMPTS).unwrap_or(0) as u32,
            max_attempts: self.int(job::MAX_ATTEMPTS).unwrap_or(0) as u32,
            enqueued_at: self.time(job::ENQUEUED_MS),
            run_at,
            started_at: self.time(job::STARTED_MS),
            finished_at: None,
            last_error: self.text(job::LAST_ERROR),
            result: None,
            progress: self.json(job::PROGRESS),
            lease_until: (self.kind == "active")
                .then(|| self.score.map(crate::clock::time_from_ms))
                .flatten(),
            args: self.json(job::PAYLOAD),
            queue: Some(
                self.text(job::QUEUE)
                    .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string()),
            ),
            priority: self.int(job::PRIORITY).unwrap_or(0).clamp(-128, 127) as i8,
            limit_key,
            waiting,
        }
    }

    /// An outcome record.
    fn outcome(&self, id: &str) -> Result<JobInfo, Error> {
        let status = match FinishedState::parse(&self.string(outcome::STATE)) {
            Some(FinishedState::Completed) => JobStatus::Completed,
            Some(FinishedState::Failed) => JobStatus::Failed,
            Some(FinishedState::Cancelled) => JobStatus::Cancelled,
            None => return Err(corrupt("result state")),
        };
        Ok(JobInfo {
            job_id: id.to_string(),
            task: self.string(outcome::TASK),
            generation: self.int(outcome::GENERATION).unwrap_or(0) as u64,
            status,
            attempts: self.int(outcome::ATTEMPTS).unwrap_or(0) as u32,
            max_attempts: self.int(outcome::MAX_ATTEMPTS).unwrap_or(0) as u32,
            enqueued_at: self.time(outcome::ENQUEUED_MS),
            run_at: self.time(outcome::RUN_AT),
            started_at: self.time(outcome::STARTED_MS),
            finished_at: self.time(outcome::FINISHED_MS),
            last_error: self.text(outcome::ERROR),
            result: self.text(outcome::RESULT),
            progress: self.json(outcome::PROGRESS),
            lease_until: None,
            args: None,
            queue: None,
            priority: 0,
            limit_key: None,
            waiting: None,
        })
    }

    /// A dead-letter entry, as a failed job whose `last_error` is the reason.
    fn dead(&self, id: &str) -> JobInfo {
        JobInfo {
            job_id: id.to_string(),
            task: self.string(dead::TASK),
            generation: self.int(dead::GENERATION).unwrap_or(0) as u64,
            status: JobStatus::Failed,
            attempts: self.int(dead::ATTEMPTS).unwrap_or(0) as u32,
            max_attempts: self.int(dead::MAX_ATTEMPTS).unwrap_or(0) as u32,
            enqueued_at: None,
            run_at: None,
            started_at: None,
            finished_at: self.time(dead::FAILED_MS),
            last_error: self.text(dead::REASON),
            result: None,
            progress: None,
            lease_until: None,
            args: self.json(dead::PAYLOAD),
            queue: Some(
                self.text(dead::QUEUE)
                    .unwrap_or_else(|| crate::DEFAULT_QUEUE.to_string()),
            ),
            priority: self.int(dead::PRIORITY).unwrap_or(0).clamp(-128, 127) as i8,
            limit_key: self.text(dead::LIMIT_KEY),
            waiting: None,
        }
    }
}

/// `inspect.lua`'s reply (now, then its sections) read into what is known of
/// job `id`: the running job (even when a replacement waits behind it), else
/// the pending one, else the outcome; `None` when there is none. Every
/// section must be readable.
pub(super) fn job_info(id: &str, reply: Value) -> Result<Option<JobInfo>, Error> {
    let mut sections = reply::array(reply, "inspect")?.into_iter();
    let now = reply::int(&sections.next().unwrap_or(Value::Null), "inspect now")?;
    let mut info: Option<JobInfo> = None;
    for section in sections {
        let section = Section::read(section, id)?;
        if !matches!(section.kind.as_str(), "active" | "pending" | "result") {
            return Err(corrupt("inspect section kind"));
        }
        if info.is_some() {
            continue;
        }
        info = Some(match section.kind.as_str() {
            "result" => section.outcome(id)?,
            _ => section.job(id, now),
        });
    }
    Ok(info)
}

/// `browse.lua`'s reply (now, the cursor's score and id, then `{id,
/// section}` per entry) read into a page.
pub(super) fn job_page(reply: Value) -> Result<JobPage, Error> {
    let mut values = reply::array(reply, "browse")?.into_iter();
    let mut next = || values.next().unwrap_or(Value::Null);
    let now = reply::int(&next(), "browse now")?;
    // The cursor's score as text: a due instant's fraction must survive.
    let score = reply::string(&next()).trim().parse::<f64>().ok();
    let id = reply::string(&next());
    let mut page = JobPage {
        jobs: Vec::new(),
        unreadable: Vec::new(),
        next: score.filter(|_| !id.is_empty()).map(|s| cursor(s, &id)),
    };
    for entry in values {
        let mut parts = reply::array(entry, "browse entry")?.into_iter();
        let id = reply::string(&parts.next().unwrap_or(Value::Null));
        let Ok(section) = Section::read(parts.next().unwrap_or(Value::Null), &id) else {
            page.unreadable.push(id);
            continue;
        };
        match section.kind.as_str() {
            "active" | "pending" => page.jobs.push(section.job(&id, now)),
            "result" => match section.outcome(&id) {
                Ok(info) => page.jobs.push(info),
                Err(_) => page.unreadable.push(id),
            },
            "dead" => page.jobs.push(section.dead(&id)),
            _ => return Err(corrupt("browse section kind")),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::{dead, job, outcome};
    use std::collections::BTreeMap;

    const COMMON: &str = include_str!("scripts/common.lua");

    /// Every `local <PREFIX>... = <number>` line of `common.lua` for these
    /// prefixes, as name -> number. A line that starts like one but does not
    /// hold a plain number fails the test: it would escape the comparison.
    fn lua_fields(prefixes: &[&str]) -> BTreeMap<String, usize> {
        let mut fields = BTreeMap::new();
        for line in COMMON.lines() {
            let Some(rest) = line.strip_prefix("local ") else {
                continue;
            };
            if !prefixes.iter().any(|p| rest.starts_with(p)) {
                continue;
            }
            let (name, value) = rest
                .split_once('=')
                .unwrap_or_else(|| panic!("not `local NAME = number`: {line:?}"));
            let value = value.split("--").next().unwrap_or_default().trim();
            let number = value
                .parse()
                .unwrap_or_else(|_| panic!("not a plain field number: {line:?}"));
            let name = name.trim().to_string();
            assert!(
                fields.insert(name, number).is_none(),
                "defined twice: {line:?}"
            );
        }
        fields
    }

    fn rust_fields() -> BTreeMap<String, usize> {
        let all = [job::ALL, outcome::ALL, dead::ALL].concat();
        let fields: BTreeMap<String, usize> = all
            .iter()
            .map(|(name, number)| (name.to_string(), *number))
            .collect();
        assert_eq!(fields.len(), all.len(), "a Rust field named twice");
        fields
    }

    #[test]
    fn record_rs_numbers_the_fields_as_common_lua_does() {
        let lua = lua_fields(&["JOB_", "OUTCOME_", "DEAD_"]);
        let rust = rust_fields();
        let only_lua: Vec<_> = lua.keys().filter(|k| !rust.contains_key(*k)).collect();
        let only_rust: Vec<_> = rust.keys().filter(|k| !lua.contains_key(*k)).collect();
        assert!(
            only_lua.is_empty() && only_rust.is_empty(),
            "fields in common.lua only: {only_lua:?}; in record.rs only: {only_rust:?}"
        );
        for (name, number) in &rust {
            assert_eq!(
                lua[name], *number,
                "{name} is field {} in common.lua, {number} in record.rs",
                lua[name]
            );
        }
    }

    #[test]
    fn each_record_numbers_its_fields_from_one_without_gaps() {
        for all in [job::ALL, outcome::ALL, dead::ALL] {
            let mut numbers: Vec<usize> = all.iter().map(|(_, n)| *n).collect();
            numbers.sort_unstable();
            assert_eq!(numbers, (1..=all.len()).collect::<Vec<_>>(), "{all:?}");
        }
    }
}
