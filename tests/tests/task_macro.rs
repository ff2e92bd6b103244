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
fn stored_arguments_are_the_payload_parameters_by_name() {
    let request: JobRequest<send_notification> = send_notification::job(
        vec!["u1".into(), "u2".into()],
        Message { text: "hi".into() },
    );
    let json = serde_json::to_value(request.args()).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({ "user_ids": ["u1", "u2"], "message": { "text": "hi" } })
    );
    // The runtime decodes the same shape.
    let payload = br#"{"user_ids":["a"],"message":{"text":"x"}}"#;
    let args: <send_notification as Task>::Args =
        scheduler::__private::decode_args(send_notification::NAME, payload).expect("decodes");
    assert_eq!(args.user_ids, vec!["a".to_string()]);
    assert_eq!(args.message, Message { text: "x".into() });

    let bad = scheduler::__private::decode_args::<<send_notification as Task>::Args>(
        send_notification::NAME,
        br#"{"user_ids":"not a list"}"#,
    );
    assert!(
        matches!(bad, Err(scheduler::Error::Payload { ref task, .. }) if task == "send_notification")
    );
}

#[test]
fn clashing_names_are_still_fields() {
    let request = clash::job(7, "id".into(), true, ());
    let json = serde_json::to_value(request.args()).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({ "when": 7, "job_id": "id", "delay": true, "scheduler": null })
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
