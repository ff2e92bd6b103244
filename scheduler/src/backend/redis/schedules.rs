//! Periodic schedules on Redis: every call is one `schedules.lua` call, the
//! state-changing ones through the reply log.

use fred::types::Value;

use crate::backend::redis::calls::Request;
use crate::backend::redis::reply;
use crate::backend::redis::RedisBackend;
use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};
use crate::Error;

impl RedisBackend {
    pub(super) async fn list_schedules_now(&self) -> Result<(i64, Vec<Stored>), Error> {
        // Read-only: nothing to record.
        let read = Request {
            id: String::new(),
            ttl_ms: 0,
        };
        let reply = self
            .call_logged(&self.scripts.schedules, &read, || vec!["list".into()])
            .await?;
        let mut items = reply::array(reply, "schedules")?.into_iter();
        let now = reply::int(&items.next().unwrap_or(Value::Null), "schedules time")?;
        let mut stored = Vec::new();
        while let (Some(name), Some(json)) = (items.next(), items.next()) {
            let name = reply::string(&name);
            match Stored::from_json(&name, &reply::bytes(json)) {
                Ok(schedule) => stored.push(schedule),
                Err(e) => {
                    tracing::error!(schedule = %name, error = %e, "unreadable schedule skipped")
                }
            }
        }
        Ok((now, stored))
    }

    pub(super) async fn put_schedule_now(
        &self,
        name: &str,
        definition: &Definition,
    ) -> Result<PutOutcome, Error> {
        let args = || -> Vec<Value> {
            vec![
                "put".into(),
                name.into(),
                definition.task.as_str().into(),
                Value::Bytes(definition.payload.clone().into()),
                Value::Integer(i64::from(definition.max_attempts)),
                definition.spec.as_str().into(),
                definition.source.as_str().into(),
                definition.version.as_str().into(),
                Value::Integer(self.keep_ms()),
                self.keys.wake_channel.as_str().into(),
                definition.queue.as_deref().unwrap_or("").into(),
            ]
        };
        let reply = self
            .call_logged(&self.scripts.schedules, &self.request(), args)
            .await?;
        match first_code(reply)?.as_str() {
            "created" => Ok(PutOutcome::Created),
            "replaced" => Ok(PutOutcome::Replaced),
            "unchanged" => Ok(PutOutcome::Unchanged),
            other => Err(reply::corrupt(&format!("schedule put answer {other:?}"))),
        }
    }

    pub(super) async fn plan_schedule_now(&self, plan: &PlanCall) -> Result<PlanOutcome, Error> {
        let args = || -> Vec<Value> {
            let mut args: Vec<Value> = Vec::with_capacity(8 + plan.ticks.len() * 3);
            args.push("plan".into());
            args.push(plan.name.as_str().into());
            args.push(plan.version.as_str().into());
            args.push(
                plan.expected_cursor_ms
                    .map(|ms| ms.to_string())
                    .unwrap_or_default()
                    .into(),
            );
            args.push(if plan.cancel_cursor_tick { "1" } else { "0" }.into());
            args.push(plan.new_cursor_ms.to_string().into());
            args.push(Value::Integer(self.keep_ms()));
            args.push(self.keys.wake_channel.as_str().into());
            for (tick_ms, nonce) in &plan.ticks {
                args.push(crate::periodic::store::tick_id(&plan.name, *tick_ms).into());
                args.push(tick_ms.to_string().into());
                args.push(nonce.as_str().into());
            }
            args
        };
        let reply = reply::array(
            self.call_logged(&self.scripts.schedules, &self.request(), args)
                .await?,
            "schedule plan",
        )?;
        let code = reply.first().map(reply::string).unwrap_or_default();
        let number = |i: usize| reply.get(i).and_then(reply::opt_int).unwrap_or(0);
        Ok(match code.as_str() {
            "planned" => PlanOutcome::Planned {
                created: number(1) as u32,
                cancelled: number(2) as u64,
            },
            "gone" => PlanOutcome::Gone,
            "stale_version" => PlanOutcome::StaleVersion,
            "paused" => PlanOutcome::Paused,
            "cursor_moved" => PlanOutcome::CursorMoved,
            other => return Err(reply::corrupt(&format!("schedule plan answer {other:?}"))),
        })
    }

    pub(super) async fn pause_schedule_now(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleChange, Error> {
        let args = || -> Vec<Value> {
            if paused {
                vec!["pause".into(), name.into(), Value::Integer(self.keep_ms())]
            } else {
                vec![
                    "resume".into(),
                    name.into(),
                    self.keys.wake_channel.as_str().into(),
                ]
            }
        };
        self.change(args).await
    }

    pub(super) async fn remove_schedule_now(&self, name: &str) -> Result<ScheduleChange, Error> {
        self.change(|| vec!["remove".into(), name.into(), Value::Integer(self.keep_ms())])
            .await
    }

    async fn change(&self, args: impl Fn() -> Vec<Value>) -> Result<ScheduleChange, Error> {
        let reply = reply::array(
            self.call_logged(&self.scripts.schedules, &self.request(), args)
                .await?,
            "schedule change",
        )?;
        let code = reply.first().map(reply::string).unwrap_or_default();
        let cancelled = reply.get(1).and_then(reply::opt_int).unwrap_or(0) as u64;
        Ok(match code.as_str() {
            "paused" | "resumed" | "removed" => ScheduleChange::Done { cancelled },
            "unchanged" => ScheduleChange::Unchanged,
            "gone" => ScheduleChange::Gone,
            other => return Err(reply::corrupt(&format!("schedule change answer {other:?}"))),
        })
    }
}

fn first_code(reply: Value) -> Result<String, Error> {
    Ok(reply::array(reply, "schedule")?
        .first()
        .map(reply::string)
        .unwrap_or_default())
}
