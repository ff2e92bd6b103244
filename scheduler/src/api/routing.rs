//! Queues, priorities and concurrency limits: which worker claims a job, in
//! what order, and how many of a task (or of one key of it) run at once
//! across every process of a namespace.
//!
//! A task names its queue and limits in `#[task(...)]`
//! ([`TaskOptions::queue`], [`TaskOptions::concurrency`],
//! [`TaskOptions::key_concurrency`]); a job request adds a priority and a
//! limit key ([`JobRequest::priority`](crate::JobRequest::priority),
//! [`JobRequest::limit_key`](crate::JobRequest::limit_key)); a worker picks
//! its queues with [`WorkerConfig::queues`](crate::WorkerConfig::queues).

use std::time::Duration;

use crate::api::error::Error;

/// The queue of a task that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Longest queue name, in bytes.
pub const MAX_QUEUE_NAME: usize = 64;

/// Longest limit key, in bytes.
pub const MAX_LIMIT_KEY: usize = 256;

/// Why a queue name is refused, or `None` for a good one: 1 to
/// [`MAX_QUEUE_NAME`] bytes of ASCII letters, digits, `_`, `-`, `.` and `:`.
/// (`#[task(queue = "...")]` applies the same rule at compile time.)
pub fn queue_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a queue name cannot be empty")
    } else if name.len() > MAX_QUEUE_NAME {
        Some("a queue name is at most 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        Some("a queue name holds only ASCII letters, digits, `_`, `-`, `.` and `:`")
    } else {
        None
    }
}

/// Checks a queue name ([`queue_name_problem`]).
pub(crate) fn validate_queue_name(name: &str) -> Result<(), Error> {
    match queue_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidQueue {
            name: shorten(name),
            reason,
        }),
    }
}

/// Checks a limit key: 1 to [`MAX_LIMIT_KEY`] bytes, no control characters.
pub(crate) fn validate_limit_key(key: &str) -> Result<(), Error> {
    let reason = if key.is_empty() {
        "a limit key cannot be empty"
    } else if key.len() > MAX_LIMIT_KEY {
        "a limit key is at most 256 bytes"
    } else if key.chars().any(char::is_control) {
        "a limit key cannot hold control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidLimitKey {
        key: shorten(key),
        reason,
    })
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A rate limit: at most `count` starts in any window of `per`
/// (`#[task(rate = "100/1m")]`, checked at compile time, or [`Rate::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// Parses `"<count>/<window>"`, the window a whole number followed by
    /// `ms`, `s`, `m` or `h`: `"100/1m"`, `"5/1s"`, `"1/500ms"`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use scheduler::Rate;
    ///
    /// let rate = Rate::parse("100/1m")?;
    /// assert_eq!((rate.count, rate.per), (100, Duration::from_secs(60)));
    /// assert!(Rate::parse("100/0s").is_err());
    /// assert!(Rate::parse("0/1s").is_err());
    /// # Ok::<(), scheduler::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Rate, Error> {
        let invalid = |reason: &'static str| Error::InvalidRate {
            input: text.chars().take(80).collect(),
            reason,
        };
        let (count, window) = text
            .split_once('/')
            .ok_or_else(|| invalid("write `<count>/<window>`, such as \"100/1m\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| invalid("the count is not a whole number"))?;
        if count == 0 {
            return Err(invalid("a rate of 0 starts would never run a job"));
        }
        let per = parse_window(window.trim()).ok_or_else(|| {
            invalid("the window is a whole number followed by `ms`, `s`, `m` or `h`, at least 1 ms")
        })?;
        Ok(Rate { count, per })
    }
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h"`; `None` for anything else or zero.
fn parse_window(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number
        .checked_mul(factor)
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Which queues a worker claims from, and in what order.
///
/// A worker never claims a job of a queue it does not serve. Within a queue,
/// a higher [`priority`](crate::JobRequest::priority) is claimed first among
/// the jobs that are due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Queues {
    /// The queues of the tasks registered in this process (the default),
    /// each claim starting at a queue picked at random, so that none starves
    /// another.
    #[default]
    OfItsTasks,
    /// These queues, always in this order: a claim takes every due job of
    /// the first queue before it looks at the second, so a busy first queue
    /// starves the others.
    Strict(Vec<String>),
    /// These queues with weights: each claim visits them in an order drawn
    /// at random with probability proportional to the weights (Sidekiq's
    /// weighted queues), so a queue of weight 3 is looked at first three
    /// times as often as one of weight 1, and none starves.
    Weighted(Vec<(String, u32)>),
}

impl Queues {
    /// Strict order over these queues.
    pub fn strict<I, S>(queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Queues::Strict(queues.into_iter().map(Into::into).collect())
    }

    /// Weighted order over these queues.
    pub fn weighted<I, S>(queues: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        Queues::Weighted(queues.into_iter().map(|(q, w)| (q.into(), w)).collect())
    }

    /// Checks the names and weights.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let names: Vec<&str> = match self {
            Queues::OfItsTasks => return Ok(()),
            Queues::Strict(queues) => queues.iter().map(String::as_str).collect(),
            Queues::Weighted(queues) => {
                if let Some((name, _)) = queues.iter().find(|(_, weight)| *weight == 0) {
                    return Err(Error::Config(format!(
                        "queue {name:?} has weight 0: give it at least 1, or leave it out"
                    )));
                }
                queues.iter().map(|(q, _)| q.as_str()).collect()
            }
        };
        if names.is_empty() {
            return Err(Error::Config(
                "a worker must serve at least one queue (use `producer_only()` for a process that runs no job)"
                    .into(),
            ));
        }
        for (i, name) in names.iter().enumerate() {
            validate_queue_name(name)?;
            if names[..i].contains(name) {
                return Err(Error::Config(format!("queue {name:?} is named twice")));
            }
        }
        Ok(())
    }
}

/// One queue as [`Scheduler::queues`](crate::Scheduler::queues) sees it, at
/// one instant of the backend's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Pending, due in the future.
    pub deferred: u64,
    /// Due, waiting for a free worker.
    pub queued: u64,
    /// Due, waiting for something else: a concurrency slot, a rate budget,
    /// or a worker that runs its task ([`Waiting`](crate::Waiting)).
    pub waiting: u64,
    /// Live worker processes that serve it (each announces its queues every
    /// few seconds; one that stopped drops out within 15 s). 0 with jobs
    /// queued: nothing will run them until a worker serving the queue starts.
    pub workers: u64,
}

/// How often a worker announces the queues it serves, and how long an
/// announcement lasts.
pub(crate) const PRESENCE_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(15);

/// The order one claim visits weighted queues in: drawn without replacement,
/// each pick proportional to the weights left.
pub(crate) fn weighted_order(
    queues: &[(String, u32)],
    mut random: impl FnMut(u64) -> u64,
) -> Vec<&str> {
    let mut left: Vec<&(String, u32)> = queues.iter().collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut pick = random(total.max(1));
        let mut index = left.len() - 1;
        for (i, (_, weight)) in left.iter().enumerate() {
            if pick < u64::from(*weight) {
                index = i;
                break;
            }
            pick -= u64::from(*weight);
        }
        order.push(left.remove(index).0.as_str());
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases both crates check (tests/fixtures/routing-rules.txt).
    fn shared_cases(kind: &str) -> Vec<(bool, String)> {
        include_str!("../../../tests/fixtures/routing-rules.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let mut parts = line.splitn(3, '\t');
                let (k, verdict, text) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
                (k == kind).then(|| (verdict == "ok", text.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_shared_rules_hold_here_as_in_the_attribute() {
        let queues = shared_cases("queue");
        let rates = shared_cases("rate");
        assert!(queues.len() >= 8 && rates.len() >= 8);
        for (ok, name) in queues {
            assert_eq!(queue_name_problem(&name).is_none(), ok, "queue {name:?}");
        }
        for (ok, text) in rates {
            assert_eq!(Rate::parse(&text).is_ok(), ok, "rate {text:?}");
        }
    }

    #[test]
    fn queue_names_are_checked() {
        assert_eq!(queue_name_problem("emails"), None);
        assert_eq!(queue_name_problem("tenant-1:emails.v2"), None);
        assert!(queue_name_problem("").is_some());
        assert!(queue_name_problem("with space").is_some());
        assert!(queue_name_problem("line\nbreak").is_some());
        assert!(queue_name_problem(&"q".repeat(65)).is_some());
        assert!(matches!(
            validate_queue_name("a,b"),
            Err(Error::InvalidQueue { .. })
        ));
    }

    #[test]
    fn rates_parse() {
        let rate = Rate::parse("5/1s").expect("a rate");
        assert_eq!((rate.count, rate.per), (5, Duration::from_secs(1)));
        assert_eq!(
            Rate::parse("1/500ms").expect("a rate").per,
            Duration::from_millis(500)
        );
        for bad in [
            "", "5", "x/1s", "5/", "5/1", "5/1d", "5/0s", "0/1s", "-1/1s",
        ] {
            assert!(
                matches!(Rate::parse(bad), Err(Error::InvalidRate { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn limit_keys_are_checked() {
        assert!(validate_limit_key("user:42").is_ok());
        assert!(validate_limit_key("").is_err());
        assert!(validate_limit_key("a\tb").is_err());
        assert!(validate_limit_key(&"k".repeat(257)).is_err());
    }

    #[test]
    fn worker_queue_choices_are_checked() {
        assert!(Queues::OfItsTasks.validate().is_ok());
        assert!(Queues::strict(["emails", "default"]).validate().is_ok());
        assert!(Queues::strict(Vec::<String>::new()).validate().is_err());
        assert!(Queues::strict(["emails", "emails"]).validate().is_err());
        assert!(Queues::weighted([("emails", 0)]).validate().is_err());
        assert!(Queues::weighted([("bad name", 1)]).validate().is_err());
    }

    #[test]
    fn weighted_order_follows_the_weights() {
        let queues = vec![("heavy".to_string(), 3), ("light".to_string(), 1)];
        let mut first_heavy = 0;
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4000 {
            let order = weighted_order(&queues, |n| rng.u64(..n));
            assert_eq!(order.len(), 2);
            if order[0] == "heavy" {
                first_heavy += 1;
            }
        }
        // 3 in 4 expected: 3000 ± a few standard deviations (27).
        assert!((2850..=3150).contains(&first_heavy), "{first_heavy}");
    }
}
