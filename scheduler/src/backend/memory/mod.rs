//! The in-memory backend: the Lua scripts' state machine in one process, with
//! the same semantics (a conformance suite runs every behaviour on both).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::api::config::SchedulerConfig;
use crate::api::error::Error;
use crate::api::events::JobEvent;
use crate::api::job::{CancelOutcome, DeadLetter, JobCounts, JobInfo};
use crate::api::listing::{JobPage, JobQuery};
use crate::backend::memory::state::State;
use crate::clock::{Clock, SystemClock};
use crate::periodic::store::{
    Definition, PlanCall, PlanOutcome, PutOutcome, ScheduleChange, Stored,
};

use crate::backend::outbox::{Outbox, NOTICE_CAPACITY};
use crate::backend::{
    Backend, BoxFuture, Claim, ClaimTicket, EnqueueReply, EventNotice, Finished, FinishedNotice,
    Listener, NewJob, Notice, RawPending, Serving, Subscription,
};

/// How many events the store's broadcast holds for a reader that lags.
const EVENT_BROADCAST: usize = 4096;

mod browse;
mod inspection;
mod schedules;
mod state;
mod transitions;
mod tx;

/// What schedulers built on the same `memory://name` and namespace share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    notices: broadcast::Sender<Notice>,
    /// Jobs that ended (id, generation), for `Scheduler::wait`.
    finished: broadcast::Sender<(String, u64)>,
    /// Job events, for `Scheduler::events`.
    events: broadcast::Sender<JobEvent>,
    clock: Arc<dyn Clock>,
}

/// An in-memory backend; clones of a scheduler and every scheduler built with
/// the same `memory://name` and namespace in this process see the same jobs.
#[derive(Debug)]
pub(crate) struct MemoryBackend {
    shared: Arc<Shared>,
    config: SchedulerConfig,
}

/// The stores of `memory://name` URLs, by (name, namespace).
type Stores = Mutex<HashMap<(String, String), Weak<Shared>>>;

fn registry() -> &'static Stores {
    static STORES: OnceLock<Stores> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Ctx of one transition: the state, the time and the settings.
struct Tx<'a> {
    s: MutexGuard<'a, State>,
    now: i64,
    keep_ms: i64,
    cap: usize,
    wake: bool,
    aborts: Vec<Notice>,
    /// Jobs this transition ended (id, generation).
    finished: Vec<(String, u64)>,
    /// The job events of this transition, when a stream of events is open.
    events: Option<Vec<JobEvent>>,
    /// A schedule was stored or resumed: planners read the schedules again.
    schedules_changed: bool,
}

impl MemoryBackend {
    /// A backend with its own state and clock.
    pub(crate) fn new(config: SchedulerConfig, clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                notices: broadcast::channel(1024).0,
                finished: broadcast::channel(1024).0,
                events: broadcast::channel(EVENT_BROADCAST).0,
                clock,
            }),
            config,
        }
    }

    /// The backend of `memory://name` in this process (created on first use).
    pub(crate) fn named(name: &str, config: SchedulerConfig) -> Self {
        let key = (name.to_string(), config.namespace.clone());
        let mut stores = registry().lock().unwrap_or_else(|p| p.into_inner());
        stores.retain(|_, weak| weak.strong_count() > 0);
        if let Some(shared) = stores.get(&key).and_then(Weak::upgrade) {
            return MemoryBackend { shared, config };
        }
        let backend = MemoryBackend::new(config, Arc::new(SystemClock));
        stores.insert(key, Arc::downgrade(&backend.shared));
        backend
    }

    /// Wakes workers (after a manual clock moved).
    pub(crate) fn wake(&self) {
        let _ = self.shared.notices.send(Notice::Wake);
    }

    fn begin(&self) -> Tx<'_> {
        Tx {
            s: self.shared.state.lock().unwrap_or_else(|p| p.into_inner()),
            now: self.shared.clock.now_ms(),
            keep_ms: self.config.keep_result.as_millis() as i64,
            cap: self.config.dead_letter_cap as usize,
            wake: false,
            aborts: Vec::new(),
            finished: Vec::new(),
            events: (self.shared.events.receiver_count() > 0).then(Vec::new),
            schedules_changed: false,
        }
    }

    fn commit(&self, tx: Tx<'_>) {
        let wake = tx.wake;
        let aborts = tx.aborts;
        let finished = tx.finished;
        let events = tx.events;
        let schedules_changed = tx.schedules_changed;
        // Sent under the lock, so that readers see events in the order the
        // transitions happened (as one Redis connection sees a script's).
        for event in events.into_iter().flatten() {
            let _ = self.shared.events.send(event);
        }
        drop(tx.s);
        for ended in finished {
            let _ = self.shared.finished.send(ended);
        }
        if wake {
            let _ = self.shared.notices.send(Notice::Wake);
        }
        if schedules_changed {
            let _ = self.shared.notices.send(Notice::Schedules);
        }
        for abort in aborts {
            let _ = self.shared.notices.send(abort);
        }
    }
}

impl Backend for MemoryBackend {
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        Box::pin(async move { Ok(self.enqueue_now(mode, if_running, jobs)) })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        // In one process a reply cannot be lost: nothing to replay.
        _ticket: &'a ClaimTicket,
        serving: &'a Serving,
    ) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move { Ok(self.claim_now(worker, max, lease, serving)) })
    }

    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move { Ok(self.complete_now(finished)) })
    }

    fn renew<'a>(
        &'a self,
        _worker: &'a str,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move { Ok(self.renew_now(lease, running)) })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(CancelOutcome, Option<String>), Error>> {
        Box::pin(async move { self.cancel_now(id, generation, task) })
    }

    fn reschedule<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        when: (&'static str, i64),
    ) -> BoxFuture<'a, Result<(String, u64, i64), Error>> {
        Box::pin(async move { Ok(self.reschedule_now(id, generation, when)) })
    }

    fn browse<'a>(&'a self, query: &'a JobQuery) -> BoxFuture<'a, Result<JobPage, Error>> {
        Box::pin(async move { self.browse_now(query) })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        Box::pin(async move { Ok(self.inspect_now(id)) })
    }

    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move { Ok(self.dead_letters_now(offset, count)) })
    }

    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async move { Ok(self.requeue_dead_now(id, nonce)) })
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { Ok(self.purge_dead_now()) })
    }

    fn delete_dead<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move { Ok(self.delete_dead_now(id)) })
    }

    fn add_activity<'a>(
        &'a self,
        minutes: &'a [(i64, crate::ops::activity::Tally)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.add_activity_now(minutes);
            Ok(())
        })
    }

    fn activity(
        &self,
        first: i64,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::ops::activity::Tally>, Error>> {
        Box::pin(async move { Ok(self.activity_now(first, count)) })
    }

    fn counts(&self) -> BoxFuture<'_, Result<JobCounts, Error>> {
        Box::pin(async move { Ok(self.counts_now()) })
    }

    fn announce_worker<'a>(
        &'a self,
        id: &'a str,
        queues: &'a [String],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.announce_worker_now(id, queues, ttl);
            Ok(())
        })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<crate::QueueInfo>, Error>> {
        Box::pin(async move { Ok(self.queues_now()) })
    }

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        _cursor: &'a str,
        _count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        Box::pin(async move { Ok(("0".to_string(), self.list_pending_now(task))) })
    }

    fn list_schedules(&self) -> BoxFuture<'_, Result<(i64, Vec<Stored>), Error>> {
        Box::pin(async move { Ok(self.list_schedules_now()) })
    }

    fn put_schedule<'a>(
        &'a self,
        name: &'a str,
        definition: &'a Definition,
    ) -> BoxFuture<'a, Result<PutOutcome, Error>> {
        Box::pin(async move { Ok(self.put_schedule_now(name, definition)) })
    }

    fn plan_schedule<'a>(
        &'a self,
        plan: &'a PlanCall,
    ) -> BoxFuture<'a, Result<PlanOutcome, Error>> {
        Box::pin(async move { Ok(self.plan_schedule_now(plan)) })
    }

    fn pause_schedule<'a>(
        &'a self,
        name: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        Box::pin(async move { Ok(self.pause_schedule_now(name, paused)) })
    }

    fn remove_schedule<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ScheduleChange, Error>> {
        Box::pin(async move { Ok(self.remove_schedule_now(name)) })
    }

    fn subscribe_finished<'a>(
        &'a self,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<Subscription<FinishedNotice>, Error>> {
        let finished = self.shared.finished.subscribe();
        Box::pin(async move {
            Ok(forward(
                finished,
                |(id, generation)| FinishedNotice::Finished { id, generation },
                || vec![FinishedNotice::Missed],
                NOTICE_CAPACITY,
            ))
        })
    }

    /// Every process of a memory store hears every outcome, and events are
    /// recorded while anyone subscribes to them: nothing to register.
    fn listen<'a>(
        &'a self,
        _kind: Listener,
        _token: &'a str,
        _ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn subscribe_events(
        &self,
        capacity: usize,
    ) -> BoxFuture<'_, Result<Subscription<EventNotice>, Error>> {
        // Under the state lock, as a transition decides whether to record
        // events (`begin`): one that began before this subscription has
        // committed, every later one records them.
        let events = {
            let _state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.events.subscribe()
        };
        Box::pin(async move {
            Ok(forward(
                events,
                EventNotice::Event,
                || vec![EventNotice::Missed],
                capacity,
            ))
        })
    }

    fn progress<'a>(
        &'a self,
        id: &'a str,
        generation: u64,
        attempt: u32,
        progress: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move { Ok(self.progress_now(id, generation, attempt, progress)) })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        let notices = self.shared.notices.subscribe();
        // Some were lost: whatever they said, claim and plan.
        Box::pin(async move {
            Ok(forward(
                notices,
                |n| n,
                || vec![Notice::Wake, Notice::Schedules],
                NOTICE_CAPACITY,
            ))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Forwards a broadcast of the store's events as a subscription of
/// `capacity` (see [`Outbox`]): `read` maps each one; when some were lost (a
/// lagging receiver, a full outbox), `missed()` is sent.
fn forward<T: Clone + Send + 'static, N: Send + 'static>(
    mut events: broadcast::Receiver<T>,
    read: fn(T) -> N,
    missed: fn() -> Vec<N>,
    capacity: usize,
) -> Subscription<N> {
    let (mut outbox, rx) = Outbox::channel(capacity, missed);
    let forward = tokio::spawn(async move {
        loop {
            let open = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => outbox.push(vec![read(event)]),
                    Err(broadcast::error::RecvError::Lagged(_)) => outbox.push_missed(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                open = outbox.report_lost(), if outbox.lost() => open,
            };
            if !open {
                return;
            }
        }
    });
    Subscription {
        notices: rx,
        close: Box::new(move || Box::pin(async move { forward.abort() })),
    }
}
