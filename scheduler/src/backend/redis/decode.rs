//! Script replies read into the backend's types: enqueue replies and claims.

use fred::types::Value;

use crate::backend::redis::reply;
use crate::backend::redis::reply::corrupt;
use crate::backend::{Candidate, Claim, ClaimedJob, EnqueueReply, Finished};
use crate::Error;

/// One job's `enqueue.lua` reply from its four values.
pub(super) fn enqueue_reply(
    code: &Value,
    generation: &Value,
    run_at: &Value,
    extra: &Value,
) -> Result<EnqueueReply, Error> {
    let code = reply::string(code);
    let mut state = reply::string(extra);
    let mut task = String::new();
    if code == "duplicate" {
        // 'state:task' (a task name may hold ':', a state never does).
        if let Some((s, t)) = state.split_once(':') {
            task = t.to_string();
            state = s.to_string();
        }
    } else if code == "wrong_task" {
        task = std::mem::take(&mut state);
    }
    Ok(EnqueueReply {
        code,
        generation: reply::int(generation, "generation")? as u64,
        run_at_ms: reply::int(run_at, "run_at")?,
        state,
        other: reply::opt_int(extra).unwrap_or(0),
        task,
        replaced: 0,
    })
}

/// Four values per job, flat: code, generation, run_at, extra; in 'replace'
/// mode a fifth, the generation of the pending job replaced (0: none).
pub(super) fn flat_enqueue_replies(
    mode: &str,
    values: Vec<Value>,
    jobs: usize,
) -> Result<Vec<EnqueueReply>, Error> {
    let width = if mode == "replace" { 5 } else { 4 };
    if values.len() != width * jobs {
        return Err(corrupt("enqueue reply length"));
    }
    values
        .chunks_exact(width)
        .map(|v| {
            let mut reply = enqueue_reply(&v[0], &v[1], &v[2], &v[3])?;
            if let Some(replaced) = v.get(4) {
                reply.replaced = reply::int(replaced, "replaced generation")? as u64;
            }
            Ok(reply)
        })
        .collect()
}

/// The run time of the created jobs, then per job its generation (created)
/// or its four values as an array.
pub(super) fn uniform_enqueue_replies(
    values: Vec<Value>,
    jobs: usize,
) -> Result<Vec<EnqueueReply>, Error> {
    if values.len() != 1 + jobs {
        return Err(corrupt("enqueue reply length"));
    }
    let mut values = values.into_iter();
    let run_at_ms = reply::int(&values.next().unwrap_or(Value::Null), "run_at")?;
    values
        .map(|entry| match entry {
            Value::Integer(generation) => Ok(EnqueueReply {
                code: "enqueued".to_string(),
                generation: generation as u64,
                run_at_ms,
                state: String::new(),
                other: 0,
                task: String::new(),
                replaced: 0,
            }),
            entry => match reply::array(entry, "enqueue entry")?.as_slice() {
                [code, generation, run_at, extra] => enqueue_reply(code, generation, run_at, extra),
                _ => Err(corrupt("enqueue entry length")),
            },
        })
        .collect()
}

/// The positions of the values in an entry of `claim.lua`'s reply: a claimed
/// job ([`LEN`](claim_entry::LEN) values: its id, the first six fields of its
/// job record, this attempt's run time, then its trace context, left out when
/// it has none), or a job the claim
/// dead-lettered ([`REJECTED_LEN`](claim_entry::REJECTED_LEN) values: id, '',
/// reason).
mod claim_entry {
    pub(super) const ID: usize = 0;
    pub(super) const TASK: usize = 1;
    pub(super) const PAYLOAD: usize = 2;
    pub(super) const GENERATION: usize = 3;
    /// This attempt's number.
    pub(super) const ATTEMPT: usize = 4;
    pub(super) const MAX_ATTEMPTS: usize = 5;
    pub(super) const ENQUEUED_MS: usize = 6;
    pub(super) const RUN_AT: usize = 7;
    /// The W3C `traceparent` the job was enqueued in (absent when none).
    pub(super) const TRACE: usize = 8;
    #[cfg(test)]
    pub(super) const LEN: usize = 9;
    pub(super) const REJECTED_LEN: usize = 3;
    /// Why a rejected job was dead-lettered.
    pub(super) const REASON: usize = 2;
}

/// A claim reply: now, next wake, then one entry per job. An entry that
/// cannot be read does not fail the batch (its jobs already run in Redis, and
/// failing the call would strand all of them until their leases expire): it
/// is reported in `rejected`, and returned as an outcome 'fail' when its id
/// and fence token are readable, so that `complete.lua` dead-letters it with
/// the reason instead of leaving it to wait out its lease.
pub(super) fn parse_claim(reply: Value) -> Result<(Claim, Vec<Finished>), Error> {
    let mut parts = reply::array(reply, "claim")?.into_iter();
    let now_ms = reply::int(&parts.next().unwrap_or(Value::Null), "claim now")?;
    let next = reply::int(&parts.next().unwrap_or(Value::Null), "claim next wake")?;
    let jobs = parts.next().unwrap_or(Value::Null);
    // The microseconds past `now_ms` (0..999).
    let sub_ms_us = parts
        .next()
        .and_then(|v| reply::opt_int(&v))
        .unwrap_or(0)
        .clamp(0, 999);
    let mut claim = Claim {
        now_us: now_ms * 1000 + sub_ms_us,
        next_wake_us: (next >= 0).then_some(next),
        jobs: Vec::new(),
        rejected: Vec::new(),
        candidates: Vec::new(),
    };
    if let Some(candidates) = parts.next() {
        claim.candidates = candidates_of(candidates)?;
    }
    let mut unreadable = Vec::new();
    for entry in reply::array(jobs, "claimed jobs")? {
        let f = match entry {
            Value::Array(f) => f,
            _ => {
                let reason = "the claimed job could not be read: not an array".to_string();
                claim.rejected.push((String::new(), reason));
                continue;
            }
        };
        if f.len() == claim_entry::REJECTED_LEN {
            claim.rejected.push((
                reply::string(&f[claim_entry::ID]),
                reply::string(&f[claim_entry::REASON]),
            ));
            continue;
        }
        match claimed_job(&f, claim.now_us) {
            Ok(job) => claim.jobs.push(job),
            Err(e) => {
                let id = f
                    .get(claim_entry::ID)
                    .map(reply::string)
                    .unwrap_or_default();
                let reason = format!("the claimed job could not be read: {e}");
                let fence = (
                    f.get(claim_entry::GENERATION).and_then(reply::opt_int),
                    f.get(claim_entry::ATTEMPT).and_then(reply::opt_int),
                );
                if let (false, (Some(generation), Some(attempt))) = (id.is_empty(), fence) {
                    unreadable.push(Finished {
                        id: id.clone(),
                        task: f
                            .get(claim_entry::TASK)
                            .map(reply::string)
                            .unwrap_or_default(),
                        generation: generation as u64,
                        attempt: attempt as u32,
                        outcome: "fail",
                        text: reason.clone(),
                        retry_delay_ms: 0,
                    });
                }
                claim.rejected.push((id, reason));
            }
        }
    }
    Ok((claim, unreadable))
}

/// claim.lua's candidates: {id, task, key or '', generation, attempt} each.
fn candidates_of(value: Value) -> Result<Vec<Candidate>, Error> {
    let mut out = Vec::new();
    for entry in reply::array(value, "claim candidates")? {
        let f = reply::array(entry, "claim candidate")?;
        if f.len() < 5 {
            return Err(corrupt("claim candidate fields"));
        }
        out.push(Candidate {
            id: reply::string(&f[0]),
            task: reply::string(&f[1]),
            key: reply::string(&f[2]),
            generation: reply::int(&f[3], "candidate generation")? as u64,
            attempt: reply::int(&f[4], "candidate attempt")? as u32,
        });
    }
    Ok(out)
}

/// One claimed job (see [`claim_entry`]), taken by a claim that ran at
/// `started_us`.
pub(super) fn claimed_job(f: &[Value], started_us: i64) -> Result<ClaimedJob, Error> {
    use claim_entry::*;
    if f.len() <= RUN_AT {
        return Err(corrupt("claimed job fields"));
    }
    Ok(ClaimedJob {
        id: reply::string(&f[ID]),
        task: reply::string(&f[TASK]),
        payload: reply::bytes(f[PAYLOAD].clone()),
        generation: reply::int(&f[GENERATION], "generation")? as u64,
        attempt: reply::int(&f[ATTEMPT], "attempt")? as u32,
        max_attempts: reply::int(&f[MAX_ATTEMPTS], "max_attempts")? as u32,
        enqueued_ms: reply::int(&f[ENQUEUED_MS], "enqueued")?,
        run_at_ms: reply::int(&f[RUN_AT], "run_at")?,
        started_us,
        trace: f.get(TRACE).map(reply::string).filter(|t| !t.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::{claim_entry, parse_claim};
    use fred::types::Value;

    /// The values of every entry `claim.lua` builds (`jobs[#jobs + 1] = {...}`)
    /// and of the one `begin_attempt` (common.lua) returns for it.
    fn claim_lua_entries() -> Vec<Vec<String>> {
        let common = include_str!("scripts/common.lua");
        let (_, begin) = common
            .split_once("local function begin_attempt(")
            .expect("common.lua has begin_attempt");
        let lua = format!(
            "{}{}",
            include_str!("scripts/claim.lua"),
            begin.replacen("return {", "jobs[#jobs + 1] = {", 1)
        );
        lua.split("jobs[#jobs + 1] = {")
            .skip(1)
            .map(|rest| {
                let (values, _) = rest.split_once('}').expect("an entry ends");
                values
                    .split(',')
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn claim_entry_positions_match_what_claim_lua_builds() {
        use claim_entry::*;
        let job_fields = [
            (TASK, "JOB_TASK"),
            (PAYLOAD, "JOB_PAYLOAD"),
            (GENERATION, "JOB_GENERATION"),
            (ATTEMPT, "JOB_ATTEMPTS"),
            (MAX_ATTEMPTS, "JOB_MAX_ATTEMPTS"),
            (ENQUEUED_MS, "JOB_ENQUEUED_MS"),
            (TRACE, "JOB_TRACE"),
        ];
        let entries = claim_lua_entries();
        let claimed: Vec<_> = entries.iter().filter(|e| e.len() == LEN).collect();
        let rejected: Vec<_> = entries.iter().filter(|e| e.len() == REJECTED_LEN).collect();
        assert_eq!(claimed.len() + rejected.len(), entries.len(), "{entries:?}");
        assert!(claimed.len() >= 2 && rejected.len() >= 2, "{entries:?}");
        for entry in claimed {
            assert_eq!(entry[ID], "id", "{entry:?}");
            for (at, field) in job_fields {
                assert_eq!(entry[at], format!("rec[{field}]"), "{entry:?}");
            }
            assert!(entry[RUN_AT].contains("run_at") || entry[RUN_AT].contains("RUN_AT"));
        }
        for entry in rejected {
            assert_eq!((entry[ID].as_str(), entry[1].as_str()), ("id", "''"));
            assert!(
                ["reason", "why"].contains(&entry[REASON].as_str()),
                "{entry:?}"
            );
        }
    }

    /// A claim entry as claim.lua writes it.
    fn entry(id: &str, generation: i64, attempt: i64, fields: usize) -> Value {
        let all: Vec<Value> = vec![
            id.into(),
            "probe".into(),
            "{}".into(),
            Value::Integer(generation),
            Value::Integer(attempt),
            Value::Integer(3),
            Value::Integer(1000),
            Value::Integer(2000),
        ];
        Value::Array(all.into_iter().take(fields).collect())
    }

    #[test]
    fn a_claim_reads_the_microseconds_past_its_millisecond() {
        let reply = |tail: Option<i64>| {
            let mut parts = vec![
                Value::Integer(5000),
                Value::Integer(5_003_250),
                Value::Array(vec![]),
            ];
            parts.extend(tail.map(Value::Integer));
            Value::Array(parts)
        };
        let (claim, _) = parse_claim(reply(Some(731))).expect("read");
        assert_eq!(claim.now_us, 5_000_731);
        assert_eq!(claim.next_wake_us, Some(5_003_250));
        // Without it (not expected from this binary's script): the
        // millisecond's start, so the worker wakes late rather than early.
        let (claim, _) = parse_claim(reply(None)).expect("read");
        assert_eq!(claim.now_us, 5_000_000);
    }

    #[test]
    fn one_unreadable_claim_entry_does_not_fail_the_batch() {
        let mut bad_number = match entry("bad-number", 8, 1, 8) {
            Value::Array(items) => items,
            _ => unreachable!(),
        };
        bad_number[6] = "not a time".into();
        let reply = Value::Array(vec![
            Value::Integer(5000),
            Value::Integer(-1),
            Value::Array(vec![
                entry("good", 7, 1, 8),
                entry("short", 9, 2, 6),
                Value::Array(bad_number),
                Value::Integer(1),
                entry("also-good", 10, 1, 8),
            ]),
        ]);
        let (claim, to_fail) = parse_claim(reply).expect("the batch is read");
        let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["good", "also-good"]);
        let rejected: Vec<&str> = claim.rejected.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(rejected, ["short", "bad-number", ""]);
        assert!(claim
            .rejected
            .iter()
            .all(|(_, why)| why.contains("could not be read")));
        // Those whose id and fence token were readable are failed for good
        // (dead-lettered with the reason), not left to wait out their lease.
        let failed: Vec<(&str, u64, u32, &str)> = to_fail
            .iter()
            .map(|f| (f.id.as_str(), f.generation, f.attempt, f.outcome))
            .collect();
        assert_eq!(
            failed,
            [("short", 9, 2, "fail"), ("bad-number", 8, 1, "fail")]
        );
    }
}
