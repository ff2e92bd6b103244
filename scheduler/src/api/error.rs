//! The one error type of the crate, and what Redis or its client reported.

use std::fmt;
use std::time::Duration;

/// What Redis, or the connection to it, reported: the text of an error the
/// scheduler got from its Redis client, carried by [`Error`]'s Redis variants
/// ([`Error::Unavailable`], [`Error::Auth`], [`Error::Redis`], ...). The
/// variant says what kind of failure it is; this says what exactly happened.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1: the connection is refused.
/// let err = scheduler::Scheduler::builder("redis://127.0.0.1:1")
///     .producer_only()
///     .command_timeout(std::time::Duration::from_millis(500))
///     .start()
///     .await
///     .unwrap_err();
/// match &err {
///     scheduler::Error::Unavailable(cause) => assert!(!cause.message().is_empty()),
///     other => panic!("{other:?}"),
/// }
/// assert!(err.is_transient());
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisError {
    message: String,
}

impl RedisError {
    /// An error with this text (for errors the scheduler finds itself, such
    /// as a connection not made within the timeout).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        RedisError {
            message: message.into(),
        }
    }

    /// What the Redis client reported, kept as text so that no type of the
    /// client crate appears in this crate's API.
    fn from_client(error: &fred::error::Error) -> Self {
        RedisError::new(error.to_string())
    }

    /// The text: the client's kind of error and what it or the server said,
    /// e.g. `IO Error: Connection refused (os error 111)` or
    /// `Unknown Error: NOPERM User app has no permissions to run the 'fcall' command`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisError {}

/// Everything that can go wrong when using a scheduler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job id was rejected before Redis was touched.
    #[error("invalid job id {id:?}: {reason}")]
    InvalidJobId {
        /// The id (shortened if very long).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A queue name was rejected ([`queue_name_problem`](crate::queue_name_problem)).
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueue {
        /// The name (shortened if very long).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A rate ([`Rate::parse`](crate::Rate::parse)) could not be read.
    #[error("invalid rate {input:?}: {reason}")]
    InvalidRate {
        /// The text (shortened if very long).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A limit key ([`JobRequest::limit_key`](crate::JobRequest::limit_key))
    /// was rejected before Redis was touched.
    #[error("invalid limit key {key:?}: {reason}")]
    InvalidLimitKey {
        /// The key (shortened if very long).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A listing cursor that no listing returned
    /// ([`JobQuery::after`](crate::JobQuery::after)).
    #[error("invalid listing cursor {0:?}: pass the `next` of a page")]
    InvalidCursor(String),
    /// A listing that cannot be answered as asked
    /// ([`Scheduler::list`](crate::Scheduler::list)).
    #[error("invalid listing: {0}")]
    InvalidQuery(String),
    /// A request id ([`JobRequest::request_id`](crate::JobRequest::request_id))
    /// was rejected before Redis was touched.
    #[error("invalid request id {id:?}: {reason}")]
    InvalidRequestId {
        /// The id (shortened if very long).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The serialized arguments are larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes (see `SchedulerBuilder::max_payload_bytes`)")]
    PayloadTooLarge {
        /// Size of the serialized arguments.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A progress report ([`JobContext::progress`](crate::JobContext::progress))
    /// is larger than [`MAX_PROGRESS_BYTES`](crate::MAX_PROGRESS_BYTES) as JSON.
    #[error("progress of {size} bytes exceeds the limit of {limit} bytes")]
    ProgressTooLarge {
        /// Size of the progress's JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The arguments could not be serialized.
    #[error("arguments of task `{task}` could not be serialized: {reason}")]
    Serialize {
        /// The task.
        task: String,
        /// What serde said, or which value was refused.
        reason: String,
    },
    /// A stored payload could not be decoded into the task's arguments.
    #[error("payload of task `{task}` could not be decoded: {source}")]
    Payload {
        /// The task.
        task: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// Untyped arguments do not match the parameters of the task they are for
    /// (an unknown or missing name, or an array of the wrong length).
    #[error("arguments of task `{task}` do not match its parameters ({params}): {problem}")]
    Arguments {
        /// The task.
        task: String,
        /// Its parameters, in order.
        params: String,
        /// What does not match.
        problem: String,
    },
    /// A run time that cannot be stored (beyond ±285,000 years).
    #[error("run time {0} is outside the supported range")]
    InvalidRunTime(String),
    /// No task is registered under this name.
    #[error("unknown task `{name}`; registered tasks: {registered}")]
    UnknownTask {
        /// The name that was asked for.
        name: String,
        /// The names that exist.
        registered: String,
    },
    /// Two tasks share one wire name.
    #[error("two tasks are named `{name}`: one at {first}, one at {second}; give one another name with `#[task(name = \"...\")]`")]
    DuplicateTask {
        /// The name.
        name: String,
        /// Where the first is defined.
        first: String,
        /// Where the second is defined.
        second: String,
    },
    /// A task needs a dependency that was not provided (found while running).
    #[error("task `{task}` needs a `{type_name}`, which was not provided; call `SchedulerBuilder::provide` with one")]
    MissingDependency {
        /// The task.
        task: String,
        /// The missing type.
        type_name: &'static str,
    },
    /// Tasks need dependencies that were not provided (found at start-up).
    #[error("missing dependencies: {details}; call `SchedulerBuilder::provide` for each")]
    MissingDependencies {
        /// One entry per task and type.
        details: String,
    },
    /// A periodic schedule was refused: a cron expression, a period, a time
    /// zone name, a missed-tick policy or a stored schedule.
    #[error("invalid schedule {input:?}: {reason}")]
    InvalidSchedule {
        /// What was given.
        input: String,
        /// What is wrong with it, naming the field at fault for a cron expression.
        reason: String,
    },
    /// A task's registration names a schedule that does not build: a
    /// hand-written [`TaskRegistration`](crate::TaskRegistration) with a
    /// mistake in its [`ScheduleSpec`](crate::ScheduleSpec) (`#[task(cron =
    /// ...)]` checks its schedule at compile time). Found at start-up.
    #[error("task `{task}` ({location}) has an invalid schedule: {source}")]
    InvalidTaskSchedule {
        /// The task's name.
        task: String,
        /// Where the task is defined.
        location: String,
        /// What is wrong: an [`Error::InvalidSchedule`].
        source: Box<Error>,
    },
    /// A setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The namespace's jobs are stored in a layout newer than this version
    /// of the crate reads (`{namespace}:layout`, see `docs/operations.md`):
    /// a rollback past a change of the stored layout. Nothing was read or
    /// written; run the newer version.
    #[error(
        "namespace {namespace:?} is stored in layout {stored}, newer than this version reads (up to {supported}): run a newer version (docs/operations.md, upgrading)"
    )]
    NewerLayout {
        /// The namespace (the shard's hash tag, in a sharded namespace).
        namespace: String,
        /// The layout the namespace records.
        stored: u64,
        /// The newest layout this version reads.
        supported: u64,
    },
    /// Redis could not be reached, or the connection broke.
    #[error("redis is unavailable: {0}")]
    Unavailable(#[source] RedisError),
    /// Something did not happen in time: Redis did not answer a command
    /// within the command timeout
    /// ([`SchedulerBuilder::command_timeout`](crate::SchedulerBuilder::command_timeout)),
    /// or a running job did not stop within the time given to
    /// [`Scheduler::cancel_and_wait`](crate::Scheduler::cancel_and_wait).
    /// Transient: a command that timed out may or may not have run.
    #[error("{message} within {timeout:?}")]
    Timeout {
        /// How long was waited.
        timeout: Duration,
        /// What did not happen in time, e.g. `redis did not answer`.
        message: String,
    },
    /// The TLS connection to Redis could not be set up: most often the server's
    /// certificate is not trusted. `rediss://` checks it against the system's
    /// trust store (or the PEM file named by `SSL_CERT_FILE`). Not transient:
    /// retrying does not change the certificate.
    #[error("TLS with redis failed: {0} (rediss:// checks the server's certificate against the system's trust store; to trust a private CA, point SSL_CERT_FILE at its PEM file)")]
    Tls(#[source] RedisError),
    /// Redis refused the credentials.
    #[error("redis refused the credentials (check the username and password in the URL)")]
    Auth(#[source] RedisError),
    /// The Redis user lacks a permission (ACL `NOPERM`).
    #[error("the redis user lacks a permission: {0}")]
    NoPermission(#[source] RedisError),
    /// Redis is out of memory under `maxmemory` with `noeviction`.
    #[error("redis is out of memory (maxmemory reached): {0}")]
    OutOfMemory(#[source] RedisError),
    /// Redis is busy (a script running, loading data, clients paused); retry later.
    #[error("redis is busy, try again: {0}")]
    Busy(#[source] RedisError),
    /// Any other error Redis returned.
    #[error("redis error: {0}")]
    Redis(#[source] RedisError),
    /// A durable write reached fewer replicas than asked within the timeout; it
    /// may or may not survive a failover.
    #[error(
        "the write reached {acked} of {wanted} replicas in time; it may not survive a failover"
    )]
    NotReplicated {
        /// Replicas that acknowledged.
        acked: i64,
        /// Replicas asked for.
        wanted: u32,
    },
    /// Redis answered something the scheduler did not expect (corrupt data, wrong key type).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// The scheduler was closed.
    #[error("the scheduler is closed")]
    Closed,
    /// A task's typed call (its helpers, [`Scheduler::replace`](crate::Scheduler::replace),
    /// [`Scheduler::result`](crate::Scheduler::result), ...) found the id held by a
    /// job of another task, and changed nothing. Job ids are global to the
    /// namespace, not per task.
    #[error("job {job_id:?} is a job of task `{found}`, not of `{expected}`; nothing changed (job ids are shared by all tasks: use another id, or the calls of `{found}`)")]
    WrongTask {
        /// The job id.
        job_id: String,
        /// The task of the call.
        expected: String,
        /// The task of the job that holds the id.
        found: String,
    },
    /// No periodic schedule is stored under this name (see
    /// [`Scheduler::schedules`](crate::Scheduler::schedules)).
    #[error("no schedule is named {0:?}")]
    ScheduleNotFound(String),
}

impl Error {
    /// Maps a client error to the variant a caller can act on.
    pub(crate) fn from_redis(error: fred::error::Error, timeout: Duration) -> Self {
        /// fred 10's message (protocol/command.rs `decr_check_attempted`).
        const WRITE_ATTEMPTS_SPENT: &str = "Too many failed write attempts.";
        use fred::error::ErrorKind;
        let details = error.details();
        let cause = RedisError::from_client(&error);
        match error.kind() {
            ErrorKind::Timeout => Error::Timeout {
                timeout,
                message: "redis did not answer".to_string(),
            },
            ErrorKind::Auth => Error::Auth(cause),
            ErrorKind::Tls => Error::Tls(cause),
            // rustls reports a rejected certificate as an I/O error of the handshake.
            ErrorKind::IO if details.contains("InvalidCertificate") => Error::Tls(cause),
            ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Backpressure => {
                Error::Unavailable(cause)
            }
            // fred's answer when a command would need a second write, which
            // the client allows none of (redis/mod.rs `builder`): after a
            // MOVED or ASK redirection (a slot that moved to another master),
            // where the command did not run and fred has read the new slot
            // map. Unavailable, so that `call` and `call_logged` send it again.
            ErrorKind::Unknown if details == WRITE_ATTEMPTS_SPENT => Error::Unavailable(cause),
            _ if details.starts_with("NOPERM") => Error::NoPermission(cause),
            _ if details.starts_with("OOM") => Error::OutOfMemory(cause),
            _ if details.starts_with("WRONGPASS") || details.starts_with("NOAUTH") => {
                Error::Auth(cause)
            }
            _ if details.starts_with("BUSY")
                || details.starts_with("LOADING")
                || details.starts_with("TRYAGAIN")
                || details.starts_with("CLUSTERDOWN")
                || details.starts_with("MASTERDOWN") =>
            {
                Error::Busy(cause)
            }
            _ if details.starts_with("WRONGTYPE") => {
                Error::Corrupt(format!("a scheduler key holds the wrong type: {details}"))
            }
            _ => Error::Redis(cause),
        }
    }

    /// Whether trying again later may succeed (connection, timeout, busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Timeout { .. } | Error::Busy(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error as ClientError, ErrorKind};

    #[test]
    fn a_rejected_certificate_is_a_tls_error_not_a_transient_one() {
        let timeout = Duration::from_secs(1);
        // What fred reports when rustls rejects the server's certificate.
        let rejected = ClientError::new(
            ErrorKind::IO,
            "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }",
        );
        let err = Error::from_redis(rejected, timeout);
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}");
        let tls = Error::from_redis(ClientError::new(ErrorKind::Tls, "bad config"), timeout);
        assert!(matches!(tls, Error::Tls(_)), "{tls:?}");
        // A connection refused stays transient.
        let refused = Error::from_redis(
            ClientError::new(ErrorKind::IO, "Connection refused"),
            timeout,
        );
        assert!(refused.is_transient(), "{refused:?}");
    }

    /// A command fred could not write again after a redirection (a slot
    /// that moved) is Unavailable, which the backend sends again; other
    /// unknown client errors stay plain Redis errors.
    #[test]
    fn a_redirected_command_out_of_write_attempts_is_unavailable() {
        let timeout = Duration::from_secs(1);
        let spent = Error::from_redis(
            ClientError::new(ErrorKind::Unknown, "Too many failed write attempts."),
            timeout,
        );
        assert!(matches!(spent, Error::Unavailable(_)), "{spent:?}");
        let other = Error::from_redis(ClientError::new(ErrorKind::Unknown, "odd"), timeout);
        assert!(matches!(other, Error::Redis(_)), "{other:?}");
    }

    #[test]
    fn client_errors_become_crate_owned_causes_with_the_clients_text() {
        let timeout = Duration::from_secs(2);
        let timed_out = Error::from_redis(ClientError::new(ErrorKind::Timeout, "late"), timeout);
        assert_eq!(timed_out.to_string(), "redis did not answer within 2s");
        assert!(matches!(timed_out, Error::Timeout { timeout: t, .. } if t == timeout));
        let noperm = Error::from_redis(
            ClientError::new(ErrorKind::Unknown, "NOPERM no permission for fcall"),
            timeout,
        );
        assert_eq!(
            noperm.to_string(),
            "the redis user lacks a permission: Unknown Error: NOPERM no permission for fcall"
        );
        // Every Redis variant carries a `RedisError` (this match fails to
        // compile if one carries a client type again), reachable as the source.
        let cause = match &noperm {
            Error::Unavailable(c)
            | Error::Tls(c)
            | Error::Auth(c)
            | Error::NoPermission(c)
            | Error::OutOfMemory(c)
            | Error::Busy(c)
            | Error::Redis(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cause.message(),
            "Unknown Error: NOPERM no permission for fcall"
        );
        let source = std::error::Error::source(&noperm).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some(cause.message()));
    }
}
