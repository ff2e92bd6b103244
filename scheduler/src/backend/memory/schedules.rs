//! Periodic schedules in memory: the counterpart of `schedules.lua`, one
//! critical section per call.

use crate::backend::memory::state::Route;
use crate::backend::memory::{MemoryBackend, Tx};
use crate::periodic::store::{
    tick_id, Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};
use crate::FinishedState;

impl Tx<'_> {
    /// Removes the tick job created at the cursor if it has not started (the
    /// same generation still pending), recording it cancelled: its generation.
    fn drop_cursor_tick(&mut self, stored: &Stored, why: &str) -> Option<u64> {
        let cursor = stored.cursor_ms?;
        if stored.cursor_generation == 0 {
            return None;
        }
        let id = tick_id(&stored.name, cursor);
        let rec = self
            .s
            .pending
            .get(&id)
            .filter(|r| r.generation == stored.cursor_generation)
            .cloned()?;
        self.s.pending.remove(&id);
        self.drop_pending_entry(&id, &rec);
        self.record_result(&id, Some(&rec), FinishedState::Cancelled, "", why);
        Some(rec.generation)
    }
}

impl MemoryBackend {
    pub(super) fn list_schedules_now(&self) -> (i64, Vec<Stored>) {
        let tx = self.begin();
        let mut all: Vec<Stored> = tx.s.schedules.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let now = tx.now;
        self.commit(tx);
        (now, all)
    }

    pub(super) fn put_schedule_now(&self, name: &str, definition: &Definition) -> PutOutcome {
        let mut tx = self.begin();
        let now = tx.now;
        let old = tx.s.schedules.get(name).cloned();
        if old
            .as_ref()
            .is_some_and(|o| o.definition.version == definition.version)
        {
            self.commit(tx);
            return PutOutcome::Unchanged;
        }
        let mut new = Stored {
            name: name.to_string(),
            definition: definition.clone(),
            paused: false,
            cursor_ms: None,
            cursor_generation: 0,
        };
        let outcome = match &old {
            None => PutOutcome::Created,
            Some(old) => {
                new.paused = old.paused;
                // As schedules.lua: the old tick that has not started is
                // removed; planning goes on after now, or after the tick
                // that started.
                new.cursor_ms = old.cursor_ms.map(|cursor| {
                    if tx
                        .drop_cursor_tick(old, "superseded by a new definition of its schedule")
                        .is_some()
                    {
                        now
                    } else {
                        cursor.max(now)
                    }
                });
                PutOutcome::Replaced
            }
        };
        tx.s.schedules.insert(name.to_string(), new);
        tx.schedules_changed = true;
        self.commit(tx);
        outcome
    }

    pub(super) fn plan_schedule_now(&self, plan: &PlanCall) -> PlanOutcome {
        let mut tx = self.begin();
        let Some(stored) = tx.s.schedules.get(&plan.name).cloned() else {
            self.commit(tx);
            return PlanOutcome::Gone;
        };
        let refused = if stored.definition.version != plan.version {
            Some(PlanOutcome::StaleVersion)
        } else if stored.paused {
            Some(PlanOutcome::Paused)
        } else if stored.cursor_ms != plan.expected_cursor_ms {
            Some(PlanOutcome::CursorMoved)
        } else {
            None
        };
        if let Some(refused) = refused {
            self.commit(tx);
            return refused;
        }
        let cancelled = if plan.cancel_cursor_tick {
            tx.drop_cursor_tick(&stored, "missed: no worker started it in time")
                .unwrap_or(0)
        } else {
            0
        };
        let definition = &stored.definition;
        let (mut created, mut at_cursor, mut earliest) = (0, 0, None::<i64>);
        for (tick_ms, nonce) in &plan.ticks {
            let id = tick_id(&plan.name, *tick_ms);
            if tx.s.pending.contains_key(&id) || tx.s.active.contains_key(&id) {
                continue;
            }
            let generation = tx.new_job(
                &id,
                (
                    &definition.task,
                    &definition.payload,
                    definition.max_attempts,
                ),
                *tick_ms,
                nonce,
                Route {
                    queue: definition.queue.clone(),
                    ..Route::default()
                },
            );
            created += 1;
            if *tick_ms == plan.new_cursor_ms {
                at_cursor = generation;
            }
            earliest = Some(earliest.map_or(*tick_ms, |e| e.min(*tick_ms)));
        }
        if let Some(entry) = tx.s.schedules.get_mut(&plan.name) {
            entry.cursor_ms = Some(plan.new_cursor_ms);
            entry.cursor_generation = at_cursor;
        }
        if let Some(run_at) = earliest {
            tx.wake_if_earliest(run_at);
        }
        self.commit(tx);
        PlanOutcome::Planned { created, cancelled }
    }

    pub(super) fn pause_schedule_now(&self, name: &str, paused: bool) -> ScheduleChange {
        let mut tx = self.begin();
        let now = tx.now;
        let Some(stored) = tx.s.schedules.get(name).cloned() else {
            self.commit(tx);
            return ScheduleChange::Gone;
        };
        if stored.paused == paused {
            self.commit(tx);
            return ScheduleChange::Unchanged;
        }
        let cancelled = if paused {
            tx.drop_cursor_tick(&stored, "its schedule was paused")
                .unwrap_or(0)
        } else {
            0
        };
        if let Some(entry) = tx.s.schedules.get_mut(name) {
            entry.paused = paused;
            entry.cursor_generation = 0;
            if !paused {
                // The paused period's ticks never run: planning goes on after now.
                entry.cursor_ms = Some(now);
            }
        }
        tx.schedules_changed = !paused;
        self.commit(tx);
        ScheduleChange::Done { cancelled }
    }

    pub(super) fn remove_schedule_now(&self, name: &str) -> ScheduleChange {
        let mut tx = self.begin();
        let Some(stored) = tx.s.schedules.remove(name) else {
            self.commit(tx);
            return ScheduleChange::Gone;
        };
        let cancelled = tx
            .drop_cursor_tick(&stored, "its schedule was removed")
            .unwrap_or(0);
        self.commit(tx);
        ScheduleChange::Done { cancelled }
    }
}
