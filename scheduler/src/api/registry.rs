//! The task registry: every `#[task]` in the binary submits a
//! [`TaskRegistration`] through `inventory`; a scheduler validates them at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::api::deps::DependencyKey;
use crate::api::error::Error;
use crate::api::task::TaskOptions;
use crate::api::task_result::TaskError;
use crate::periodic::ScheduleSpec;
use crate::worker::context::JobContext;

/// The future of one task run: the JSON of its result, or the error.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Option<String>, TaskError>> + Send>>;

/// Decodes a payload, resolves dependencies and starts the task.
pub type RunFn = fn(JobContext, &[u8]) -> Result<TaskFuture, Error>;

/// Where a task was defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// `file!()`.
    pub file: &'static str,
    /// `line!()`.
    pub line: u32,
    /// `column!()`.
    pub column: u32,
    /// `module_path!()`.
    pub module_path: &'static str,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One registered task: a plain const struct the macro emits.
#[derive(Debug)]
pub struct TaskRegistration {
    /// Wire name.
    pub name: &'static str,
    /// Where the task function is.
    pub location: Location,
    /// Options from `#[task(...)]`.
    pub options: TaskOptions,
    /// How the payload is laid out. `Some(names)`: a JSON array holding the
    /// stored arguments in this order (what `#[task]` emits, with the
    /// parameters' names, `r#type` as `"type"`); the untyped API converts
    /// between it and an object by name. `None`: the task's own JSON, which
    /// the untyped API passes through unchanged (hand-written tasks).
    pub params: Option<&'static [&'static str]>,
    /// The dependency types the task takes.
    pub dependencies: fn() -> Vec<DependencyKey>,
    /// `Some` for a periodic task (`#[task(cron = "...")]`): when it runs,
    /// checked at compile time; [`ScheduleSpec::schedule`] builds it.
    pub schedule: Option<ScheduleSpec>,
    /// Starts a run.
    pub run: RunFn,
}

inventory::collect!(TaskRegistration);

/// Builds a periodic task's schedule, so that a mistake in a hand-written
/// registration stops the start-up naming the task, rather than leaving its
/// schedule unplanned.
fn check_schedule(registration: &TaskRegistration) -> Result<(), Error> {
    let Some(spec) = &registration.schedule else {
        return Ok(());
    };
    spec.schedule()
        .map(drop)
        .map_err(|source| Error::InvalidTaskSchedule {
            task: registration.name.to_string(),
            location: registration.location.to_string(),
            source: Box::new(source),
        })
}

/// The validated set of tasks a scheduler knows.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, &'static TaskRegistration>,
}

impl Registry {
    /// Every task submitted through `inventory`, plus the explicit ones; fails on
    /// two tasks with one name, naming both places, and on a periodic task
    /// whose schedule does not build ([`Error::InvalidTaskSchedule`]).
    pub fn collect(explicit: &[&'static TaskRegistration]) -> Result<Self, Error> {
        let mut registry = Registry::default();
        let found = inventory::iter::<TaskRegistration>
            .into_iter()
            .chain(explicit.iter().copied());
        for registration in found {
            registry.add(registration)?;
        }
        Ok(registry)
    }

    fn add(&mut self, registration: &'static TaskRegistration) -> Result<(), Error> {
        match self.tasks.get(registration.name) {
            Some(existing) if std::ptr::eq(*existing, registration) => Ok(()),
            Some(existing) if existing.location == registration.location => Ok(()),
            Some(existing) => Err(Error::DuplicateTask {
                name: registration.name.to_string(),
                first: existing.location.to_string(),
                second: registration.location.to_string(),
            }),
            None => {
                check_schedule(registration)?;
                registration.options.validate(registration.name)?;
                self.tasks.insert(registration.name, registration);
                Ok(())
            }
        }
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<&'static TaskRegistration> {
        self.tasks.get(name).copied()
    }

    /// All tasks, sorted by name.
    pub fn tasks(&self) -> impl Iterator<Item = &'static TaskRegistration> + '_ {
        self.tasks.values().copied()
    }

    /// Checks that every dependency of every task a worker serving `queues`
    /// runs is provided (the tasks of other queues need none here).
    pub(crate) fn check_dependencies(
        &self,
        deps: &crate::api::deps::Dependencies,
        queues: &crate::Queues,
    ) -> Result<(), Error> {
        let mut missing = Vec::new();
        for task in self.served(queues) {
            for key in (task.dependencies)() {
                if !deps.contains(&key) {
                    missing.push(format!(
                        "task `{}` ({}) needs `{}`",
                        task.name, task.location, key.type_name
                    ));
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingDependencies {
                details: missing.join("; "),
            })
        }
    }

    /// The tasks a worker serving `queues` runs.
    fn served<'a>(
        &'a self,
        queues: &'a crate::Queues,
    ) -> impl Iterator<Item = &'static TaskRegistration> + 'a {
        self.tasks().filter(move |task| match queues {
            crate::Queues::OfItsTasks => true,
            crate::Queues::Strict(names) => names.iter().any(|q| q == task.options.queue_name()),
            crate::Queues::Weighted(names) => {
                names.iter().any(|(q, _)| q == task.options.queue_name())
            }
        })
    }

    /// One line per task: name, location, options. Logged at start-up.
    pub fn describe(&self) -> String {
        self.tasks()
            .map(|t| format!("{} ({})", t.name, t.location))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(_ctx: JobContext, _payload: &[u8]) -> Result<TaskFuture, Error> {
        Ok(Box::pin(async { Ok(None) }))
    }

    const fn periodic(name: &'static str, zone: &'static str) -> TaskRegistration {
        TaskRegistration {
            name,
            location: Location {
                file: "reports.rs",
                line: 7,
                column: 1,
                module_path: "reports",
            },
            options: TaskOptions::DEFAULT,
            params: Some(&[]),
            dependencies: Vec::new,
            schedule: Some(ScheduleSpec {
                expression: "0 9 * * MON-FRI",
                zone,
                missed: "skip",
            }),
            run,
        }
    }

    static PARIS: TaskRegistration = periodic("daily_digest", "Europe/Paris");

    const fn limited(name: &'static str, options: TaskOptions) -> TaskRegistration {
        TaskRegistration {
            options,
            schedule: None,
            ..periodic(name, "UTC")
        }
    }

    static NO_SLOTS: TaskRegistration = limited(
        "no_slots",
        TaskOptions {
            concurrency: Some(0),
            ..TaskOptions::DEFAULT
        },
    );
    static EMPTY_WINDOW: TaskRegistration = limited(
        "empty_window",
        TaskOptions {
            rate: Some(crate::Rate {
                count: 5,
                per: std::time::Duration::ZERO,
            }),
            ..TaskOptions::DEFAULT
        },
    );
    static BAD_QUEUE: TaskRegistration = limited(
        "bad_queue",
        TaskOptions {
            queue: Some("two words"),
            ..TaskOptions::DEFAULT
        },
    );

    #[test]
    fn a_hand_written_registration_with_a_bad_limit_or_queue_is_refused_at_start() {
        for bad in [&NO_SLOTS, &EMPTY_WINDOW] {
            let error = Registry::collect(&[bad]).expect_err("refused");
            assert!(
                matches!(&error, Error::Config(text) if text.contains(bad.name)),
                "{error:?}"
            );
        }
        assert!(matches!(
            Registry::collect(&[&BAD_QUEUE]),
            Err(Error::InvalidQueue { .. })
        ));
    }
    static MISSPELT: TaskRegistration = periodic("weekly_digest", "Europe/Pariss");

    #[test]
    fn a_registration_whose_schedule_does_not_build_is_refused_naming_the_task() {
        assert!(Registry::collect(&[&PARIS]).is_ok());
        let error = Registry::collect(&[&PARIS, &MISSPELT]).expect_err("a bad zone");
        let Error::InvalidTaskSchedule {
            task,
            location,
            source,
        } = &error
        else {
            panic!("not InvalidTaskSchedule: {error:?}");
        };
        assert_eq!(task, "weekly_digest");
        assert_eq!(location, "reports.rs:7:1");
        assert!(
            matches!(**source, Error::InvalidSchedule { ref input, .. } if input == "Europe/Pariss"),
            "{source:?}"
        );
        assert!(error
            .to_string()
            .contains("task `weekly_digest` (reports.rs:7:1)"));
    }
}
