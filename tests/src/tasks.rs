//! Tasks for the runtime tests, written by hand against the `Task` trait and
//! registered explicitly (the fallback for platforms without `inventory`).

use std::time::Duration;

use scheduler::{
    Dep, DependencyKey, Error, IntoTaskResult, JobContext, Location, Task, TaskError, TaskFuture,
    TaskOptions, TaskRegistration,
};
use serde::{Deserialize, Serialize};

use crate::probe::Probe;

/// What a probe job does.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeArgs {
    /// Recorded with the execution.
    pub arg: String,
    /// Sleeps this long (abortable).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Fails (retryably) on attempts up to this number.
    #[serde(default)]
    pub fail_times: u32,
    /// "ok", "panic", "permanent", "exit" (kills its own process), "block"
    /// (sleeps blocking the thread), "progress" (reports `{"step": 1}`,
    /// sleeps, reports `{"step": 2}`),
    /// "block-first" (blocks on the first attempt only).
    #[serde(default)]
    pub mode: String,
    /// Large integers that must survive the round trip (recorded with the execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big: Option<(u64, i64)>,
    /// A float (non-finite ones must be refused at enqueue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float: Option<f64>,
}

impl ProbeArgs {
    pub fn new(arg: &str) -> Self {
        ProbeArgs {
            arg: arg.to_string(),
            ..ProbeArgs::default()
        }
    }

    pub fn sleep(mut self, ms: u64) -> Self {
        self.sleep_ms = ms;
        self
    }

    pub fn fail(mut self, times: u32) -> Self {
        self.fail_times = times;
        self
    }

    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.to_string();
        self
    }
}

async fn probe_body(
    ctx: JobContext,
    probe: Dep<Probe>,
    args: ProbeArgs,
) -> Result<usize, TaskError> {
    let index = probe.start(&ctx, &args);
    if args.mode == "exit" {
        std::process::abort();
    }
    if args.mode == "progress" {
        // Two reports, the sleep between them.
        ctx.progress(serde_json::json!({ "step": 1 })).await?;
        tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
        ctx.progress(serde_json::json!({ "step": 2 })).await?;
    } else if args.mode == "block" || (args.mode == "block-first" && ctx.attempt() == 1) {
        // Blocks the runtime thread: on a current-thread runtime the heartbeat
        // cannot run either, like a worker frozen by a long GC pause or swap.
        std::thread::sleep(Duration::from_millis(args.sleep_ms));
    } else if args.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
    }
    probe.end(index);
    match args.mode.as_str() {
        "panic" => panic!("probe asked to panic"),
        "permanent" => return Err(TaskError::permanent("probe asked to fail for good")),
        _ => {}
    }
    if ctx.attempt() <= args.fail_times {
        return Err(TaskError::retry_after(
            format!("probe failure on attempt {}", ctx.attempt()),
            Duration::from_millis(50),
        ));
    }
    Ok(args.arg.len())
}

macro_rules! probe_task {
    ($ty:ident, $reg:ident, $run:ident, $name:literal, $options:expr) => {
        /// A probe task.
        pub struct $ty;

        static $reg: TaskRegistration = TaskRegistration {
            name: $name,
            location: Location {
                file: file!(),
                line: line!(),
                column: column!(),
                module_path: module_path!(),
            },
            options: $options,
            // `ProbeArgs` is stored as a JSON object: the untyped API passes it through.
            params: None,
            dependencies: probe_dependencies,
            schedule: None,
            run: $run,
        };

        fn $run(ctx: JobContext, payload: &[u8]) -> Result<TaskFuture, Error> {
            let args: ProbeArgs =
                serde_json::from_slice(payload).map_err(|source| Error::Payload {
                    task: $name.to_string(),
                    source,
                })?;
            let probe = ctx.dependency::<Probe>()?;
            Ok(Box::pin(async move {
                probe_body(ctx, probe, args).await.into_task_result()
            }))
        }

        impl Task for $ty {
            const NAME: &'static str = $name;
            const OPTIONS: TaskOptions = $options;
            type Args = ProbeArgs;
            type Output = usize;
            fn registration() -> &'static TaskRegistration {
                &$reg
            }
        }
    };
}

fn probe_dependencies() -> Vec<DependencyKey> {
    vec![DependencyKey::of::<Probe>()]
}

probe_task!(
    ProbeTask,
    PROBE_REGISTRATION,
    run_probe,
    "probe",
    TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(20)),
        ..TaskOptions::DEFAULT
    }
);

probe_task!(
    QuickTimeoutTask,
    QUICK_TIMEOUT_REGISTRATION,
    run_quick_timeout,
    "quick_timeout",
    TaskOptions {
        max_attempts: Some(2),
        timeout: Some(Duration::from_millis(200)),
        ..TaskOptions::DEFAULT
    }
);

probe_task!(
    EmailProbe,
    EMAIL_PROBE_REGISTRATION,
    run_email_probe,
    "email_probe",
    TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(20)),
        queue: Some("emails"),
        ..TaskOptions::DEFAULT
    }
);

probe_task!(
    LimitedProbe,
    LIMITED_PROBE_REGISTRATION,
    run_limited_probe,
    "limited_probe",
    TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(20)),
        concurrency: Some(2),
        key_concurrency: Some(1),
        ..TaskOptions::DEFAULT
    }
);

probe_task!(
    LateProbe,
    LATE_PROBE_REGISTRATION,
    run_late_probe,
    "late_probe",
    TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(20)),
        ..TaskOptions::DEFAULT
    }
);

probe_task!(
    RatedProbe,
    RATED_PROBE_REGISTRATION,
    run_rated_probe,
    "rated_probe",
    TaskOptions {
        max_attempts: Some(3),
        timeout: Some(Duration::from_secs(20)),
        rate: Some(scheduler::Rate {
            count: 4,
            per: Duration::from_secs(1),
        }),
        key_rate: Some(scheduler::Rate {
            count: 1,
            per: Duration::from_secs(1),
        }),
        ..TaskOptions::DEFAULT
    }
);
