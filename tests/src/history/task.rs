//! The recorded task: every run appends its start, then its end (also when
//! its future is dropped), to the [`Recorder`] the worker provides.

use std::time::Duration;

use scheduler::{
    Dep, DependencyKey, Error, IntoTaskResult, JobContext, Location, Task, TaskError, TaskFuture,
    TaskOptions, TaskRegistration,
};
use serde::{Deserialize, Serialize};

use super::recorder::Recorder;

/// Attempts a history job gets unless the request says otherwise.
pub const MAX_ATTEMPTS: u32 = 4;
/// The retry delay a failing run asks for (so a retry's earliest start is known).
pub const RETRY_AFTER: Duration = Duration::from_millis(50);

/// The name of the worker running the task (a process or an in-process worker).
#[derive(Clone, Debug)]
pub struct WorkerName(pub String);

/// What one history job does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistArgs {
    /// Sleeps this long (the future can be dropped meanwhile).
    pub sleep_ms: u64,
    /// Fails (retryably) on attempts up to this number.
    pub fail_times: u32,
    /// Fails for good (goes to the dead letter).
    pub permanent: bool,
}

async fn body(
    ctx: JobContext,
    recorder: Dep<Recorder>,
    worker: Dep<WorkerName>,
    args: HistArgs,
) -> Result<(), TaskError> {
    let guard = recorder.start(&ctx, &worker.0);
    if args.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
    }
    if args.permanent {
        guard.finish("permanent");
        return Err(TaskError::permanent("asked to fail for good"));
    }
    if ctx.attempt() <= args.fail_times {
        guard.finish("retry");
        return Err(TaskError::retry_after(
            format!("asked to fail attempt {}", ctx.attempt()),
            RETRY_AFTER,
        ));
    }
    guard.finish("ok");
    Ok(())
}

/// The history task (`hist`).
pub struct HistTask;

static REGISTRATION: TaskRegistration = TaskRegistration {
    name: "hist",
    location: Location {
        file: file!(),
        line: line!(),
        column: column!(),
        module_path: module_path!(),
    },
    options: OPTIONS,
    params: None,
    dependencies,
    schedule: None,
    run,
};

const OPTIONS: TaskOptions = TaskOptions {
    max_attempts: Some(MAX_ATTEMPTS),
    timeout: Some(Duration::from_secs(20)),
    ..TaskOptions::DEFAULT
};

fn dependencies() -> Vec<DependencyKey> {
    vec![
        DependencyKey::of::<Recorder>(),
        DependencyKey::of::<WorkerName>(),
    ]
}

fn run(ctx: JobContext, payload: &[u8]) -> Result<TaskFuture, Error> {
    let args: HistArgs = serde_json::from_slice(payload).map_err(|source| Error::Payload {
        task: "hist".to_string(),
        source,
    })?;
    let recorder = ctx.dependency::<Recorder>()?;
    let worker = ctx.dependency::<WorkerName>()?;
    Ok(Box::pin(async move {
        body(ctx, recorder, worker, args).await.into_task_result()
    }))
}

impl Task for HistTask {
    const NAME: &'static str = "hist";
    const OPTIONS: TaskOptions = OPTIONS;
    type Args = HistArgs;
    type Output = ();
    fn registration() -> &'static TaskRegistration {
        &REGISTRATION
    }
}
