//! Behaviour of `#[task]` that needs no Redis: the registry, the registration,
//! the stored arguments and the generated helpers' types.

use std::time::Duration;

use scheduler::{task, Dep, JobContext, JobRequest, Registry, Task, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};

/// A service a task depends on.
pub trait Notifier: Send + Sync {
    /// Sends one message.
    fn send(&self, user: &str, text: &str);
}

/// Another dependency, sized.
pub struct Templates;

/// A payload type of the user's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    text: String,
}

/// The line of `send_notification`'s name, which the registration points at.
const SEND_NOTIFICATION_LINE: u32 = line!() + 4;

/// Sends a message to users.
#[task]
async fn send_notification(
    notifier: Dep<dyn Notifier>,
    templates: Dep<Templates>,
    ctx: JobContext,
    user_ids: Vec<String>,
    message: Message,
) -> Result<usize, TaskError> {
    let _ = (&templates, ctx.job_id());
    for user in &user_ids {
        notifier.send(user, &message.text);
    }
    Ok(user_ids.len())
}

#[task(name = "cleanup.v2", max_attempts = 3, timeout = "30s")]
async fn cleanup(older_than_days: u32) {
    let _ = older_than_days;
}

#[task(timeout = "500ms")]
async fn quick() -> Result<(), String> {
    Ok(())
}

/// A payload argument named like a helper's own parameter.
#[task]
async fn clash(when: u64, job_id: String, delay: bool, scheduler: ()) {
    let _ = (when, job_id, delay, scheduler);
}

/// The benchmark's task: its record must stay small.
#[task]
async fn bench_like(k: String, s: f64, p: String) {
    let _ = (k, s, p);
}

/// A raw identifier as an argument: stored under its name without `r#`.
#[task]
async fn raw_name(r#type: String, n: u8) {
    let _ = (r#type, n);
}

mod nested {
    use scheduler::task;

    #[task(timeout = "1h")]
    pub(crate) async fn in_module(n: i64) -> Result<i64, String> {
        Ok(n * 2)
    }
}

#[test]
fn registry_lists_tasks_with_name_location_and_options() {
    let registry = Registry::collect(&[]).expect("no duplicate names in this binary");
    let reg = registry.get("send_notification").expect("registered");
    assert_eq!(reg.location.file, file!());
    assert_eq!(reg.location.line, SEND_NOTIFICATION_LINE);
    assert_eq!(reg.location.column, 10, "the column of the name");
    assert_eq!(reg.location.module_path, module_path!());
    assert_eq!(reg.options, TaskOptions::DEFAULT);

    let reg = registry
        .get("cleanup.v2")
        .expect("registered under its option name");
    assert!(registry.get("cleanup").is_none());
    assert_eq!(
        reg.options,
        TaskOptions {
            max_attempts: Some(3),
            timeout: Some(Duration::from_secs(30)),
            ..TaskOptions::DEFAULT
        }
    );
    assert_eq!(
        registry.get("quick").map(|r| r.options.timeout),
        Some(Some(Duration::from_millis(500)))
    );
    let reg = registry.get("in_module").expect("nested module");
    assert_eq!(
        reg.location.module_path,
        concat!(module_path!(), "::nested")
    );
    assert_eq!(reg.options.timeout, Some(Duration::from_secs(3600)));
}

#[test]
fn task_trait_constants() {
    assert_eq!(send_notification::NAME, "send_notification");
    assert_eq!(cleanup::NAME, "cleanup.v2");
    assert_eq!(<cleanup as Task>::OPTIONS.max_attempts, Some(3));
    let registry = Registry::collect(&[send_notification::registration()])
        .expect("the explicit registration is the submitted one");
    assert_eq!(
        registry.get("send_notification").map(|r| r.location),
        Some(send_notification::registration().location)
    );
    // `Task::Output` is the `Ok` type, `()` for a unit task.
    fn output_of<T: Task>() -> std::marker::PhantomData<T::Output> {
        std::marker::PhantomData
    }
    let _: std::marker::PhantomData<usize> = output_of::<send_notification>();
    let _: std::marker::PhantomData<()> = output_of::<cleanup>();
    let _: std::marker::PhantomData<()> = output_of::<quick>();
}

#[test]
fn dependencies_list_the_dep_types() {
    let deps = (send_notification::registration().dependencies)();
    let names: Vec<&str> = deps.iter().map(|d| d.type_name).collect();
    assert_eq!(
        names,
        [
            std::any::type_name::<dyn Notifier>(),
            std::any::type_name::<Templates>()
        ]
    );
    assert!((cleanup::registration().dependencies)().is_empty());
}

#[test]
fn stored_arguments_are_the_payload_parameters_by_position() {
    let request: JobRequest<send_notification> = send_notification::job(
        vec!["u1".into(), "u2".into()],
        Message { text: "hi".into() },
    );
    let json = serde_json::to_string(request.args()).expect("serializes");
    assert_eq!(json, r#"[["u1","u2"],{"text":"hi"}]"#);
    // One argument is still an array; none is an empty one.
    let json = serde_json::to_string(cleanup::job(30).args()).expect("serializes");
    assert_eq!(json, "[30]");
    let json = serde_json::to_string(quick::job().args()).expect("serializes");
    assert_eq!(json, "[]");
    // The names, in order, are in the registration (raw identifiers unprefixed).
    assert_eq!(
        send_notification::registration().params,
        Some(&["user_ids", "message"][..])
    );
    assert_eq!(raw_name::registration().params, Some(&["type", "n"][..]));
    assert_eq!(quick::registration().params, Some(&[][..]));
}

#[test]
fn the_benchmark_payload_carries_no_names() {
    let request = bench_like::job("noop".into(), 0.0, "x".repeat(100));
    let json = serde_json::to_string(request.args()).expect("serializes");
    assert_eq!(json, format!(r#"["noop",0.0,"{}"]"#, "x".repeat(100)));
    assert_eq!(json.len(), 115, "127 bytes as an object by name");
}

#[test]
fn stored_arguments_decode_by_position_and_by_name() {
    type Args = <send_notification as Task>::Args;
    let decode = |payload: &[u8]| {
        scheduler::__private::decode_args::<Args>(
            send_notification::NAME,
            send_notification::registration().params.unwrap_or_default(),
            payload,
        )
    };
    // What this version writes.
    let args = decode(br#"[["a"],{"text":"x"}]"#).expect("decodes an array");
    assert_eq!(args.user_ids, vec!["a".to_string()]);
    assert_eq!(args.message, Message { text: "x".into() });
    // What earlier versions wrote: still runs.
    let args = decode(br#"{"user_ids":["b"],"message":{"text":"y"}}"#).expect("decodes an object");
    assert_eq!(args.user_ids, vec!["b".to_string()]);
    assert_eq!(args.message, Message { text: "y".into() });
    // A round trip through the typed request.
    let request = send_notification::job(vec!["c".into()], Message { text: "z".into() });
    let payload = serde_json::to_vec(request.args()).expect("serializes");
    assert_eq!(decode(&payload).expect("round trip").user_ids, ["c"]);

    let bad = decode(br#"{"user_ids":"not a list"}"#);
    assert!(
        matches!(bad, Err(scheduler::Error::Payload { ref task, .. }) if task == "send_notification")
    );
    // A wrong number of arguments says so, with the parameters' names.
    for (payload, found) in [
        (&br#"[["a"]]"#[..], "1 argument"),
        (br#"[["a"],{"text":"x"},3]"#, "3 arguments"),
    ] {
        let Err(err) = decode(payload) else {
            panic!("a wrong arity decoded")
        };
        assert_eq!(
            err.to_string(),
            format!(
                "payload of task `send_notification` could not be decoded: {found} stored \
                 by position, the task takes 2 (user_ids, message)"
            )
        );
    }
}

#[test]
fn clashing_names_are_still_arguments() {
    let request = clash::job(7, "id".into(), true, ());
    let json = serde_json::to_value(request.args()).expect("serializes");
    assert_eq!(json, serde_json::json!([7, "id", true, null]));
    assert_eq!(
        clash::registration().params,
        Some(&["when", "job_id", "delay", "scheduler"][..])
    );
    let args: <clash as Task>::Args =
        serde_json::from_value(serde_json::json!([8, "other", false, null])).expect("decodes");
    assert_eq!(
        (args.when, args.job_id.as_str(), args.delay),
        (8, "other", false)
    );
}

#[test]
fn the_function_is_still_a_plain_async_fn() {
    // A JobContext has no public constructor, so call a task without one.
    let out = block_on(nested::in_module(21));
    assert_eq!(out, Ok(42));
    block_on(cleanup(3));
}

/// Polls a future that never waits.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the task waited"),
    }
}
