//! What a task returns, and how a failed attempt asks for a retry or gives up.

use std::any::Any;
use std::fmt;
use std::time::Duration;

/// An error a task returns to steer what happens next: retry (after an optional
/// delay) or fail for good.
///
/// Any other error type that implements `Display` is retried with the task's
/// backoff; return a `TaskError` to choose.
///
/// ```
/// use scheduler::TaskError;
/// use std::time::Duration;
///
/// let later = TaskError::retry_after("rate limited", Duration::from_secs(30));
/// assert_eq!(later.retry_delay(), Some(Duration::from_secs(30)));
/// assert!(TaskError::permanent("no such user").is_permanent());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    directive: Directive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Retry(Option<Duration>),
    Permanent,
}

impl TaskError {
    /// A failed attempt, retried with the task's exponential backoff.
    pub fn retry(message: impl fmt::Display) -> Self {
        TaskError {
            message: message.to_string(),
            directive: Directive::Retry(None),
        }
    }

    /// A failed attempt, retried after exactly `delay` (if attempts remain).
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> Self {
        TaskError {
            message: message.to_string(),
            directive: Directive::Retry(Some(delay)),
        }
    }

    /// A failure that no retry can fix: the job goes to the dead letter at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        TaskError {
            message: message.to_string(),
            directive: Directive::Permanent,
        }
    }

    /// The error message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the job must not be retried.
    pub fn is_permanent(&self) -> bool {
        self.directive == Directive::Permanent
    }

    /// The delay the task asked for, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        match self.directive {
            Directive::Retry(delay) => delay,
            Directive::Permanent => None,
        }
    }
}

/// A scheduler error met inside a task (a progress report, a dependency
/// lookup, a job it enqueues): retried with the task's backoff when it is
/// transient (Redis unreachable, a timeout), else for good (a missing
/// dependency, a value that cannot be serialized: no retry fixes them).
impl From<crate::Error> for TaskError {
    fn from(e: crate::Error) -> Self {
        if e.is_transient() {
            TaskError::retry(e)
        } else {
            TaskError::permanent(e)
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// The return types a task may have: `()` or `Result<T, E>` where `T: Serialize`
/// and `E: Display`.
///
/// The value of `Ok` is stored as the job's result (JSON) for `keep_result`.
#[diagnostic::on_unimplemented(
    message = "a task must return `()` or `Result<T, E>` where `T: Serialize` and `E: Display`, not `{Self}`",
    label = "this return type cannot be recorded as a job outcome"
)]
pub trait IntoTaskResult {
    /// The value a successful run produces: `()` for `()`, `T` for `Result<T, E>`.
    /// It is what [`Task::Output`](crate::Task::Output) is set to.
    type Output;

    /// Converts the task's return value: `Ok(Some(json))` for a stored value.
    fn into_task_result(self) -> Result<Option<String>, TaskError>;
}

impl IntoTaskResult for () {
    type Output = ();

    fn into_task_result(self) -> Result<Option<String>, TaskError> {
        Ok(None)
    }
}

impl<T, E> IntoTaskResult for Result<T, E>
where
    T: serde::Serialize,
    E: fmt::Display + 'static,
{
    type Output = T;

    fn into_task_result(self) -> Result<Option<String>, TaskError> {
        match self {
            Ok(value) => match serde_json::to_string(&value) {
                Ok(json) if json == "null" => Ok(None),
                Ok(json) => Ok(Some(json)),
                Err(e) => Err(TaskError::permanent(format!(
                    "the task's return value could not be serialized: {e}"
                ))),
            },
            Err(error) => {
                let any: &dyn Any = &error;
                match any.downcast_ref::<TaskError>() {
                    Some(task_error) => Err(task_error.clone()),
                    None => Err(TaskError::retry(error)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_and_values() {
        assert_eq!(().into_task_result(), Ok(None));
        let ok: Result<u64, String> = Ok(u64::MAX);
        assert_eq!(ok.into_task_result(), Ok(Some(u64::MAX.to_string())));
        let unit_ok: Result<(), String> = Ok(());
        assert_eq!(unit_ok.into_task_result(), Ok(None));
    }

    #[test]
    fn foreign_errors_retry_and_task_errors_steer() {
        let err: Result<(), String> = Err("boom".into());
        assert_eq!(err.into_task_result(), Err(TaskError::retry("boom")));
        let perm: Result<(), TaskError> = Err(TaskError::permanent("bad"));
        let out = perm.into_task_result();
        assert!(matches!(out, Err(ref e) if e.is_permanent() && e.message() == "bad"));
    }
}
