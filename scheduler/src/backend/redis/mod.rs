//! The Redis side of every state transition: one script call each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{ReconnectPolicy, UnresponsiveConfig};
use fred::types::{CustomCommand, InfoKind, Key, Value};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use self::keys::Keys;
use self::reply::corrupt;
use self::scripts::{Lua, Scripts};
use crate::api::config::SchedulerConfig;
use crate::api::error::Error;
use crate::api::job::{CancelOutcome, DeadLetter, FinishedState, JobInfo, JobStatus};
use crate::backend::{
    user_request_key, user_request_ttl_ms, Backend, BoxFuture, Claim, ClaimTicket, ClaimedJob,
    EnqueueReply, Finished, NewJob, Notice, RawPending, Subscription,
};
use crate::ops::health::HealthState;

pub(crate) mod keys;
pub(crate) mod reply;
pub(crate) mod scripts;

/// Entries an audit walk reads per script call.
const AUDIT_PAGE: i64 = 500;

/// Connection and scripts of one namespace.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    url: String,
    pub(crate) client: Client,
    keys: Keys,
    script_keys: Vec<Key>,
    /// `enqueue_one`'s keys: due, pending, active, seq.
    enqueue_one_keys: Vec<Key>,
    scripts: Scripts,
    /// Whether the scripts are called as functions of the loaded library
    /// (FCALL); false where the server refused FUNCTION LOAD (EVALSHA).
    functions: Arc<AtomicBool>,
    pub(crate) config: SchedulerConfig,
    /// Risky server settings found at connect (see [`startup_warnings`]).
    warnings: Arc<Vec<String>>,
    /// The highest generation this process has seen in the namespace: a
    /// reconnect finding the counter below it means Redis lost its data.
    known_generation: Arc<AtomicU64>,
    /// Where a detected data loss is reported.
    health: Arc<OnceLock<HealthState>>,
    /// Watches reconnects for a restart that lost the data.
    restart_watch: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("namespace", &self.keys.namespace())
            .finish()
    }
}

/// A fred builder with the scheduler's timeouts and reconnect policy.
pub(crate) fn builder(url: &str, config: &SchedulerConfig) -> Result<Builder, Error> {
    let redis_config = Config::from_url(url).map_err(|e| {
        Error::Config(format!(
            "redis url is invalid ({}): {}",
            redact(url),
            e.details()
        ))
    })?;
    let timeout = config.command_timeout;
    let mut builder = Builder::from_config(redis_config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            // No automatic re-sends: fred would send a state-changing script
            // again after a dropped connection, and it would run twice.
            // `RedisBackend::call` and `call_logged` re-send themselves, the
            // latter with the request id that makes a re-send safe.
            c.max_command_attempts = 1;
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(timeout),
                interval: (timeout / 4).max(Duration::from_millis(50)),
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
    Ok(builder)
}

/// One server setting, `None` when CONFIG GET is refused (ACL) or unknown.
async fn config_value(client: &Client, name: &'static str) -> Option<String> {
    let reply: Value = client
        .custom(
            CustomCommand::new_static("CONFIG", None::<u16>, false),
            vec!["GET", name],
        )
        .await
        .ok()?;
    match reply {
        Value::Array(items) => items.get(1).map(reply::string),
        Value::Map(map) => map.inner().into_values().next().map(|v| reply::string(&v)),
        _ => None,
    }
}

/// Server settings under which jobs can be lost: eviction and no persistence.
/// Each is logged at start-up and returned by `Scheduler::startup_warnings`.
/// Skipped quietly when the user may not run CONFIG GET.
pub(crate) async fn startup_warnings(client: &Client) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(policy) = config_value(client, "maxmemory-policy").await {
        if policy != "noeviction" {
            warnings.push(format!(
                "redis maxmemory-policy is `{policy}`: at maxmemory Redis may evict scheduler keys and silently lose jobs; set it to `noeviction`"
            ));
        }
    }
    let appendonly = config_value(client, "appendonly").await;
    let save = config_value(client, "save").await;
    if let (Some(appendonly), Some(save)) = (appendonly, save) {
        if appendonly != "yes" && save.trim().is_empty() {
            warnings.push(
                "redis persistence is off (appendonly no, save \"\"): a restart of Redis loses every job; enable AOF (`appendonly yes`)".to_string(),
            );
        }
    }
    warnings
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl RedisBackend {
    pub(crate) async fn connect(url: &str, config: SchedulerConfig) -> Result<Self, Error> {
        // Pub/sub ignores SELECT: channels are scoped by the database (keys.rs).
        let database = Config::from_url(url)
            .ok()
            .and_then(|c| c.database)
            .unwrap_or(0);
        let keys = Keys::in_database(&config.namespace, database)?;
        let client = builder(url, &config)?
            .build()
            .map_err(|e| Error::Config(e.details().to_string()))?;
        let timeout = config.command_timeout;
        match tokio::time::timeout(timeout, client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(Error::from_redis(e, timeout));
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err(Error::Unavailable(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    format!("could not connect to {} within {timeout:?}", redact(url)),
                )));
            }
        }
        let warnings = startup_warnings(&client).await;
        for warning in &warnings {
            tracing::warn!(warning = %warning, "risky redis configuration");
        }
        let store = RedisBackend {
            warnings: Arc::new(warnings),
            known_generation: Arc::new(AtomicU64::new(0)),
            health: Arc::new(OnceLock::new()),
            restart_watch: Arc::new(Mutex::new(None)),
            url: url.to_string(),
            client,
            script_keys: keys
                .script_keys
                .iter()
                .map(|k| Key::from(k.as_str()))
                .collect(),
            enqueue_one_keys: keys
                .enqueue_one_keys
                .iter()
                .map(|k| Key::from(k.as_str()))
                .collect(),
            keys,
            scripts: Scripts::new(),
            functions: Arc::new(AtomicBool::new(false)),
            config,
        };
        store.load_scripts().await?;
        if let Some(seq) = store.generation_counter().await {
            store.saw_generation(seq);
        }
        let run_id = store.run_id().await;
        let watch = store.watch_restarts(run_id);
        if let Ok(mut slot) = store.restart_watch.lock() {
            *slot = Some(watch);
        }
        Ok(store)
    }

    fn saw_generation(&self, generation: u64) {
        self.known_generation
            .fetch_max(generation, Ordering::Relaxed);
    }

    /// The namespace's generation counter (0 when the key is absent); `None`
    /// when Redis cannot answer (retried briefly: a restarted server may be loading).
    async fn generation_counter(&self) -> Option<u64> {
        for _ in 0..20 {
            match self
                .client
                .get::<Option<u64>, _>(self.keys.script_keys[8].as_str())
                .await
            {
                Ok(seq) => return Some(seq.unwrap_or(0)),
                Err(e) if self.error(e.clone()).is_transient() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// The server's `run_id` (new at every server start).
    async fn run_id(&self) -> Option<String> {
        let info: String = self.client.info(Some(InfoKind::Server)).await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_string())
    }

    /// After every reconnect: a new server process whose generation counter is
    /// below what this process saw has lost data (restarted without
    /// persistence, or flushed). Logged as an error and reported as degraded health.
    fn watch_restarts(&self, run_id: Option<String>) -> JoinHandle<()> {
        let mut reconnects = self.client.reconnect_rx();
        let this = self.clone();
        tokio::spawn(async move {
            let mut last_run_id = run_id;
            loop {
                match reconnects.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                let run_id = this.run_id().await;
                let Some(seq) = this.generation_counter().await else {
                    continue;
                };
                let known = this.known_generation.load(Ordering::Relaxed);
                if seq < known {
                    let reason = format!(
                        "redis restarted empty: the generation counter of namespace {:?} went back from {known} to {seq} (server run id {} -> {}); jobs stored before the restart may be lost",
                        this.keys.namespace(),
                        last_run_id.as_deref().unwrap_or("?"),
                        run_id.as_deref().unwrap_or("?"),
                    );
                    tracing::error!(known, seq, "{reason}");
                    if let Some(health) = this.health.get() {
                        health.alert(&reason);
                    }
                    this.known_generation.store(seq, Ordering::Relaxed);
                }
                last_run_id = run_id.or(last_run_id);
            }
        })
    }

    /// Loads the function library, or, where the server refuses it (Redis < 7,
    /// an ACL without FUNCTION, ...), the scripts for EVALSHA.
    pub(crate) async fn load_scripts(&self) -> Result<(), Error> {
        match self.load_library().await {
            Ok(()) => {
                self.functions.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => self.use_evalsha(&e),
        }
        for lua in self.scripts.all() {
            lua.script
                .load(&self.client)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// FUNCTION LOAD of the library, on every primary of a cluster. REPLACE is
    /// harmless: the name is content-addressed, so it only replaces itself.
    async fn load_library(&self) -> Result<(), Error> {
        self.client
            .function_load_cluster::<Value, _>(true, self.scripts.library.code.as_str())
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    fn use_evalsha(&self, refusal: &Error) {
        self.functions.store(false, Ordering::Relaxed);
        tracing::info!(
            library = %self.scripts.library.name,
            reason = %refusal,
            "redis refused the scheduler's function library; calling its scripts with EVALSHA"
        );
    }

    pub(crate) fn error(&self, e: fred::error::Error) -> Error {
        Error::from_redis(e, self.config.command_timeout)
    }

    /// Runs one script that is safe to run twice (it reads, or re-running it
    /// changes nothing: `renew`), re-sending it after a connection failure.
    ///
    /// `args` builds the arguments; it runs again for each send, so that the
    /// usual call moves them instead of keeping a copy (cloning a few thousand
    /// `Bytes` per bulk call cost measurable client CPU).
    async fn call(&self, lua: &Lua, args: impl Fn() -> Vec<Value>) -> Result<Value, Error> {
        let mut sends = 1;
        loop {
            match self.send(lua, &args).await {
                Err(Error::Unavailable(e)) if sends < SENDS => {
                    tracing::debug!(error = %e, "script sent again after a connection failure");
                    sends += 1;
                }
                result => return result,
            }
        }
    }

    /// Runs one state-changing script through `common.lua`'s reply log: the
    /// request (ttl, id) follows `args`. After a connection failure (the
    /// script may have run with its reply lost) it is sent again with the
    /// same request id, and a script that had run answers what it answered
    /// then instead of running again. A request with a ttl is looked up and
    /// recorded on every send (one GET, one SET); one without is neither.
    ///
    /// Only a connection failure is retried, never a timeout: the first send
    /// then either reached Redis before its connection failed or never will,
    /// so a retry cannot overtake it. A reply is kept for the re-send window
    /// ([`Self::resend_window_ms`]), longer than the retries can take.
    async fn call_logged(
        &self,
        lua: &Lua,
        request: &Request,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Value, Error> {
        let mut sends = 1;
        loop {
            let logged_args = || {
                let mut args = args();
                push_request(&mut args, request);
                args
            };
            match self.send(lua, logged_args).await {
                Err(Error::Unavailable(e)) if sends < SENDS => {
                    tracing::debug!(request = %request.id, error = %e, "state-changing script sent again with its request id after a connection failure");
                    sends += 1;
                }
                result => return result,
            }
        }
    }

    /// Sends one script once: FCALL of its function (see
    /// [`Self::fcall_reloading`]), or EVALSHA where functions were refused.
    async fn send(&self, lua: &Lua, args: impl Fn() -> Vec<Value>) -> Result<Value, Error> {
        if self.functions.load(Ordering::Relaxed) {
            let reply = self
                .fcall_reloading(&self.client, &lua.function, &self.script_keys, &args)
                .await?;
            if let Some(reply) = reply {
                return Ok(reply);
            }
        }
        lua.script
            .evalsha_with_reload::<Value, _, _>(&self.client, self.script_keys.clone(), args())
            .await
            .map_err(|e| self.error(e))
    }

    /// A fresh request id for one state-changing call of this process, kept
    /// in the reply log for the re-send window.
    fn request(&self) -> Request {
        Request {
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            ttl_ms: self.resend_window_ms(),
        }
    }

    /// The reply-log identity of an enqueue or replace. Its reply is
    /// recorded only where running it again would answer wrongly: a
    /// replace (run again, it would find its own job and answer
    /// `Enqueued`), a request the caller named, and an enqueue whose created
    /// job's outcome (which holds its nonce) may expire before a re-send
    /// arrives (`keep_result` shorter than the re-send window). Otherwise an
    /// enqueue run again finds the job it created by its nonce, in every
    /// state, and answers the same; and one that created nothing (a
    /// duplicate) changed nothing, so running it again is right. (Not
    /// covered: within the re-send window, another client replaces the job
    /// the lost-reply enqueue created, since a replaced pending job keeps no
    /// outcome with its nonce; the re-send then answers `Duplicate` of the
    /// replacement, or, once that finished too, creates the job again.)
    fn enqueue_request(&self, mode: &str, jobs: &[NewJob]) -> Request {
        if let [NewJob {
            id,
            request_id: Some(request_id),
            ..
        }] = jobs
        {
            return Request {
                id: user_request_key(id, request_id),
                ttl_ms: user_request_ttl_ms(&self.config).max(self.resend_window_ms()),
            };
        }
        let mut request = self.request();
        if mode == "enqueue" && self.keep_ms() >= request.ttl_ms {
            request.ttl_ms = 0;
        }
        request
    }

    /// How long a reply is kept for a re-send of this process: the client
    /// re-sends within a few command timeouts; a minute at least.
    fn resend_window_ms(&self) -> i64 {
        (self.config.command_timeout.as_millis() as i64)
            .saturating_mul(i64::from(SENDS) + 1)
            .max(RESEND_WINDOW_MIN_MS)
    }

    /// FCALL of `function` through `client`, loading the library again and
    /// retrying once when the server lost it (restart, FUNCTION FLUSH,
    /// failover), as EVALSHA reloads on NOSCRIPT. The retry is safe: a
    /// missing function ran nothing. `None` when the server now refuses
    /// functions (e.g. failed over to an older server): the caller uses EVALSHA.
    async fn fcall_reloading<C: FunctionInterface + Sync>(
        &self,
        client: &C,
        function: &str,
        keys: &[Key],
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Option<Value>, Error> {
        let fcall = || client.fcall::<Value, _, _, _>(function, keys.to_vec(), args());
        match fcall().await {
            Err(e) if e.details().starts_with("ERR Function not found") => {
                match self.load_library().await {
                    Ok(()) => fcall().await.map(Some).map_err(|e| self.error(e)),
                    Err(e) if e.is_transient() => Err(e),
                    Err(e) => {
                        self.use_evalsha(&e);
                        Ok(None)
                    }
                }
            }
            result => result.map(Some).map_err(|e| self.error(e)),
        }
    }

    /// Sends the first request for one job to `enqueue_one` (see its header),
    /// exactly once: a re-send after a lost reply must go to `enqueue.lua`
    /// with the same request id, which answers from the reply log or finds a
    /// job that the first send created by its nonce. `None` when the server
    /// now refuses functions (the caller then uses `enqueue.lua`).
    async fn enqueue_first_send(
        &self,
        job: &NewJob,
        request: &Request,
    ) -> Result<Option<Value>, Error> {
        // Without a ttl (see `enqueue_request`) the request id is not sent
        // either: the usual first send carries 8 arguments.
        let args = || {
            let mut args = Vec::with_capacity(11);
            push_job_values(&mut args, job);
            args.push(Value::Integer(i64::from(self.config.dead_letter_cap)));
            let scope = self.keys.channel_scope.as_str();
            let log = request.ttl_ms > 0;
            if log || !scope.is_empty() {
                args.push(scope.into());
            }
            if log {
                args.push(request.id.as_str().into());
                args.push(Value::Integer(request.ttl_ms));
            }
            args
        };
        self.fcall_reloading(
            &self.client,
            &self.scripts.enqueue_one,
            &self.enqueue_one_keys,
            args,
        )
        .await
    }

    /// With durability on, waits until enough replicas have the writes sent so far.
    async fn replicate(&self) -> Result<(), Error> {
        let Some(durable) = self.config.durable else {
            return Ok(());
        };
        // `WAIT` names no key, so a cluster client would send it to any
        // primary, which may answer at once for writes it never saw: route it
        // by the namespace's slot to the node (and connection) that took the
        // writes. Outside a cluster the hash is ignored.
        let slot = fred::util::redis_keyslot(self.keys.script_keys[0].as_bytes());
        let acked: i64 = self
            .client
            .with_options(&Options {
                cluster_hash: Some(fred::types::ClusterHash::Custom(slot)),
                ..Options::default()
            })
            .wait(
                i64::from(durable.replicas),
                durable.timeout.as_millis() as i64,
            )
            .await
            .map_err(|e| self.error(e))?;
        if acked < i64::from(durable.replicas) {
            return Err(Error::NotReplicated {
                acked,
                wanted: durable.replicas,
            });
        }
        Ok(())
    }

    fn keep_ms(&self) -> i64 {
        self.config.keep_result.as_millis() as i64
    }

    /// A subscriber connection for the wake and abort channels, forwarded as notices.
    async fn subscribe_notices(&self) -> Result<Subscription, Error> {
        let subscriber = builder(&self.url, &self.config)?
            .build_subscriber_client()
            .map_err(|e| Error::Config(e.details().to_string()))?;
        subscriber.init().await.map_err(|e| self.error(e))?;
        subscriber
            .subscribe(vec![
                self.keys.wake_channel.clone(),
                self.keys.abort_channel.clone(),
            ])
            .await
            .map_err(|e| self.error(e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let manager = subscriber.manage_subscriptions();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let abort_channel = self.keys.abort_channel.clone();
        let forward = tokio::spawn(async move {
            loop {
                let notice = tokio::select! {
                    reconnect = reconnects.recv() => match reconnect {
                        // Notifications may have been missed while disconnected.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Notice::Wake,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    message = messages.recv() => match message {
                        Ok(m) if *m.channel == *abort_channel => {
                            let text = reply::string(&m.value);
                            match text.split_once(':') {
                                Some((generation, id)) => Notice::Abort {
                                    generation: generation.parse().unwrap_or(0),
                                    id: id.to_string(),
                                },
                                None => continue,
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Notice::Wake,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if tx.send(notice).is_err() {
                    return;
                }
            }
        });
        Ok(Subscription {
            notices: rx,
            close: Box::new(move || {
                Box::pin(async move {
                    forward.abort();
                    manager.abort();
                    let _ = subscriber.quit().await;
                })
            }),
        })
    }
}

/// Sends of one script call at most: the first and two re-sends after
/// connection failures.
const SENDS: u32 = 3;

/// The shortest time a reply stays in the reply log.
const RESEND_WINDOW_MIN_MS: i64 = 60_000;

/// The reply-log identity of one state-changing call (`common.lua` `logged`).
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// The key under which the reply is recorded.
    pub(crate) id: String,
    /// How long it is kept (0: neither recorded nor looked up).
    pub(crate) ttl_ms: i64,
}

/// The value that ends a logged call's arguments (`common.lua` `logged`):
/// empty when there is nothing to look up or record, else
/// `<ttl ms>:<request id>`.
fn push_request(args: &mut Vec<Value>, request: &Request) {
    if request.ttl_ms <= 0 {
        args.push("".into());
    } else {
        args.push(format!("{}:{}", request.ttl_ms, request.id).into());
    }
}

/// Whether `enqueue.lua` gets these jobs in its 'uniform' layout: two or
/// more jobs that share task, attempts, run time and unique flag (a bulk
/// enqueue, usually) send those once, 3 values per job instead of 8, and a
/// created job is answered with its generation alone.
fn uniform_batch(mode: &str, jobs: &[NewJob]) -> bool {
    mode == "enqueue"
        && jobs.len() > 1
        && jobs.iter().all(|job| {
            job.task == jobs[0].task
                && job.max_attempts == jobs[0].max_attempts
                && job.when == jobs[0].when
                && job.unique_until_result_expires == jobs[0].unique_until_result_expires
        })
}

/// The job of a request `enqueue_one` can take: one job, 'enqueue' mode,
/// without the unique flag (which needs the finished-job lookup it skips)
/// nor a request id of the caller's (which needs the reply-log lookup).
fn first_send_of_one<'a>(mode: &str, jobs: &'a [NewJob]) -> Option<&'a NewJob> {
    match jobs {
        [job]
            if mode == "enqueue"
                && !job.unique_until_result_expires
                && job.request_id.is_none() =>
        {
            Some(job)
        }
        _ => None,
    }
}

/// One job's `enqueue.lua` reply from its four values.
fn enqueue_reply(
    code: &Value,
    generation: &Value,
    run_at: &Value,
    extra: &Value,
) -> Result<EnqueueReply, Error> {
    let code = reply::string(code);
    let mut state = reply::string(extra);
    let mut task = String::new();
    if code == "duplicate" {
        // 'state:task' (a task name may hold ':', a state never does).
        if let Some((s, t)) = state.split_once(':') {
            task = t.to_string();
            state = s.to_string();
        }
    } else if code == "wrong_task" {
        task = std::mem::take(&mut state);
    }
    Ok(EnqueueReply {
        code,
        generation: reply::int(generation, "generation")? as u64,
        run_at_ms: reply::int(run_at, "run_at")?,
        state,
        other: reply::opt_int(extra).unwrap_or(0),
        task,
        replaced: 0,
    })
}

/// Four values per job, flat: code, generation, run_at, extra; in 'replace'
/// mode a fifth, the generation of the pending job replaced (0: none).
fn flat_enqueue_replies(
    mode: &str,
    values: Vec<Value>,
    jobs: usize,
) -> Result<Vec<EnqueueReply>, Error> {
    let width = if mode == "replace" { 5 } else { 4 };
    if values.len() != width * jobs {
        return Err(corrupt("enqueue reply length"));
    }
    values
        .chunks_exact(width)
        .map(|v| {
            let mut reply = enqueue_reply(&v[0], &v[1], &v[2], &v[3])?;
            if let Some(replaced) = v.get(4) {
                reply.replaced = reply::int(replaced, "replaced generation")? as u64;
            }
            Ok(reply)
        })
        .collect()
}

/// The run time of the created jobs, then per job its generation (created)
/// or its four values as an array.
fn uniform_enqueue_replies(values: Vec<Value>, jobs: usize) -> Result<Vec<EnqueueReply>, Error> {
    if values.len() != 1 + jobs {
        return Err(corrupt("enqueue reply length"));
    }
    let mut values = values.into_iter();
    let run_at_ms = reply::int(&values.next().unwrap_or(Value::Null), "run_at")?;
    values
        .map(|entry| match entry {
            Value::Integer(generation) => Ok(EnqueueReply {
                code: "enqueued".to_string(),
                generation: generation as u64,
                run_at_ms,
                state: String::new(),
                other: 0,
                task: String::new(),
                replaced: 0,
            }),
            entry => match reply::array(entry, "enqueue entry")?.as_slice() {
                [code, generation, run_at, extra] => enqueue_reply(code, generation, run_at, extra),
                _ => Err(corrupt("enqueue entry length")),
            },
        })
        .collect()
}

/// A claim reply: now, next wake, then one entry per job. An entry that
/// cannot be read does not fail the batch (its jobs already run in Redis, and
/// failing the call would strand all of them until their leases expire): it
/// is reported in `rejected`, and returned as an outcome 'fail' when its id
/// and fence token are readable, so that `complete.lua` dead-letters it with
/// the reason instead of leaving it to wait out its lease.
fn parse_claim(reply: Value) -> Result<(Claim, Vec<Finished>), Error> {
    let mut parts = reply::array(reply, "claim")?.into_iter();
    let now_ms = reply::int(&parts.next().unwrap_or(Value::Null), "claim now")?;
    let next = reply::int(&parts.next().unwrap_or(Value::Null), "claim next wake")?;
    let mut claim = Claim {
        now_ms,
        next_wake_ms: (next >= 0).then_some(next),
        jobs: Vec::new(),
        rejected: Vec::new(),
    };
    let mut unreadable = Vec::new();
    for entry in reply::array(parts.next().unwrap_or(Value::Null), "claimed jobs")? {
        let f = match entry {
            Value::Array(f) => f,
            _ => {
                let reason = "the claimed job could not be read: not an array".to_string();
                claim.rejected.push((String::new(), reason));
                continue;
            }
        };
        if f.len() == 3 {
            claim
                .rejected
                .push((reply::string(&f[0]), reply::string(&f[2])));
            continue;
        }
        match claimed_job(&f) {
            Ok(job) => claim.jobs.push(job),
            Err(e) => {
                let id = f.first().map(reply::string).unwrap_or_default();
                let reason = format!("the claimed job could not be read: {e}");
                let fence = (
                    f.get(3).and_then(reply::opt_int),
                    f.get(4).and_then(reply::opt_int),
                );
                if let (false, (Some(generation), Some(attempt))) = (id.is_empty(), fence) {
                    unreadable.push(Finished {
                        id: id.clone(),
                        generation: generation as u64,
                        attempt: attempt as u32,
                        outcome: "fail",
                        text: reason.clone(),
                        retry_delay_ms: 0,
                    });
                }
                claim.rejected.push((id, reason));
            }
        }
    }
    Ok((claim, unreadable))
}

/// One claimed job: id, task, payload, generation, attempt, max attempts,
/// enqueued ms, run_at ms.
fn claimed_job(f: &[Value]) -> Result<ClaimedJob, Error> {
    if f.len() < 8 {
        return Err(corrupt("claimed job fields"));
    }
    Ok(ClaimedJob {
        id: reply::string(&f[0]),
        task: reply::string(&f[1]),
        payload: reply::bytes(f[2].clone()),
        generation: reply::int(&f[3], "generation")? as u64,
        attempt: reply::int(&f[4], "attempt")? as u32,
        max_attempts: reply::int(&f[5], "max_attempts")? as u32,
        enqueued_ms: reply::int(&f[6], "enqueued")?,
        run_at_ms: reply::int(&f[7], "run_at")?,
    })
}

/// The arguments of `enqueue.lua` (its header documents them).
fn enqueue_args(
    mode: &'static str,
    if_running: &'static str,
    uniform: bool,
    keys: &Keys,
    config: &SchedulerConfig,
    jobs: &[NewJob],
) -> Vec<Value> {
    let unique = |job: &NewJob| {
        if job.unique_until_result_expires {
            "1"
        } else {
            "0"
        }
    };
    let mut args: Vec<Value> = Vec::with_capacity(11 + jobs.len() * if uniform { 3 } else { 8 });
    args.push(mode.into());
    args.push(if_running.into());
    args.push(keys.wake_channel.as_str().into());
    args.push(keys.abort_channel.as_str().into());
    args.push(Value::Integer(i64::from(config.dead_letter_cap)));
    if uniform {
        let first = &jobs[0];
        args.push("uniform".into());
        args.push(first.task.as_str().into());
        args.push(Value::Integer(i64::from(first.max_attempts)));
        args.push(first.when.0.into());
        args.push(Value::Integer(first.when.1));
        args.push(unique(first).into());
        for job in jobs {
            args.push(job.id.as_str().into());
            args.push(Value::Bytes(job.payload.clone().into()));
            args.push(job.nonce.as_str().into());
        }
        return args;
    }
    args.push("".into());
    for job in jobs {
        push_job_values(&mut args, job);
        args.push(unique(job).into());
    }
    args
}

/// One job's values, in the order both `enqueue.lua` (layout '') and
/// `enqueue_one` take them: id, task, payload, max attempts, when kind, when
/// ms, nonce (`enqueue_one` hands them on to `enqueue.lua` in that order).
fn push_job_values(args: &mut Vec<Value>, job: &NewJob) {
    args.push(job.id.as_str().into());
    args.push(job.task.as_str().into());
    args.push(Value::Bytes(job.payload.clone().into()));
    args.push(Value::Integer(i64::from(job.max_attempts)));
    args.push(job.when.0.into());
    args.push(Value::Integer(job.when.1));
    args.push(job.nonce.as_str().into());
}

impl Backend for RedisBackend {
    fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    fn enqueue<'a>(
        &'a self,
        mode: &'static str,
        if_running: &'static str,
        jobs: &'a [NewJob],
    ) -> BoxFuture<'a, Result<Vec<EnqueueReply>, Error>> {
        Box::pin(async move {
            let request = self.enqueue_request(mode, jobs);
            let first_send =
                first_send_of_one(mode, jobs).filter(|_| self.functions.load(Ordering::Relaxed));
            let mut reply = None;
            if let Some(job) = first_send {
                match self.enqueue_first_send(job, &request).await {
                    Ok(sent) => reply = sent,
                    // The connection failed with the request sent or not: ask
                    // again through enqueue.lua, which recognises this request
                    // (its request id, its nonce) in every state its job can
                    // have reached.
                    Err(Error::Unavailable(e)) => {
                        tracing::debug!(job_id = %job.id, error = %e, "enqueue sent again after a connection failure");
                    }
                    Err(e) => return Err(e),
                }
            }
            // One job is never uniform, so enqueue_one's reply (flat, as
            // enqueue.lua's for one job) is read below like enqueue.lua's.
            let uniform = uniform_batch(mode, jobs);
            let reply = match reply {
                Some(reply) => reply,
                None => {
                    let args =
                        || enqueue_args(mode, if_running, uniform, &self.keys, &self.config, jobs);
                    self.call_logged(&self.scripts.enqueue, &request, args)
                        .await?
                }
            };
            self.replicate().await?;
            let values = reply::array(reply, "enqueue")?;
            let replies = if uniform {
                uniform_enqueue_replies(values, jobs.len())?
            } else {
                flat_enqueue_replies(mode, values, jobs.len())?
            };
            if let Some(max) = replies.iter().map(|r| r.generation).max() {
                self.saw_generation(max);
            }
            Ok(replies)
        })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        max: usize,
        lease: Duration,
        ticket: &'a ClaimTicket,
    ) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    worker.into(),
                    Value::Integer(max as i64),
                    Value::Integer(lease.as_millis() as i64),
                    Value::Integer(self.keep_ms()),
                    Value::Integer(i64::from(self.config.dead_letter_cap)),
                    ticket.nonce.as_str().into(),
                    if ticket.retry { "1" } else { "" }.into(),
                ]
            };
            // Sent once: the worker sends a failed claim again with the same
            // ticket and the retry flag, and claim.lua's own log answers it.
            let reply = self.send(&self.scripts.claim, args).await?;
            let (claim, unreadable) = parse_claim(reply)?;
            if !unreadable.is_empty() {
                // Best effort: if this fails, their leases expire as before.
                if let Err(e) = self.complete(&unreadable).await {
                    tracing::warn!(error = %e, count = unreadable.len(), "unreadable claimed jobs could not be dead-lettered; they are retried after their lease");
                }
            }
            if let Some(max) = claim.jobs.iter().map(|j| j.generation).max() {
                self.saw_generation(max);
            }
            Ok(claim)
        })
    }

    fn complete<'a>(
        &'a self,
        finished: &'a [Finished],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let args = || {
                let mut args: Vec<Value> = Vec::with_capacity(2 + finished.len() * 6);
                args.push(Value::Integer(self.keep_ms()));
                args.push(Value::Integer(i64::from(self.config.dead_letter_cap)));
                args.push(self.keys.wake_channel.as_str().into());
                for f in finished {
                    args.push(f.id.as_str().into());
                    args.push(Value::Integer(f.generation as i64));
                    args.push(Value::Integer(i64::from(f.attempt)));
                    args.push(f.outcome.into());
                    args.push(f.text.as_str().into());
                    args.push(Value::Integer(f.retry_delay_ms as i64));
                }
                args
            };
            // Needs no reply log: every entry is fenced by (generation,
            // attempt), never handed out twice, so run again it changes
            // nothing (its entries answer 'stale').
            let reply = self.call(&self.scripts.complete, args).await?;
            Ok(reply::array(reply, "complete")?
                .iter()
                .map(reply::string)
                .collect())
        })
    }

    fn renew<'a>(
        &'a self,
        lease: Duration,
        running: &'a [(String, u64, u32)],
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let args = || {
                let mut args: Vec<Value> = Vec::with_capacity(1 + running.len() * 3);
                args.push(Value::Integer(lease.as_millis() as i64));
                for (id, generation, attempt) in running {
                    args.push(id.as_str().into());
                    args.push(Value::Integer(*generation as i64));
                    args.push(Value::Integer(i64::from(*attempt)));
                }
                args
            };
            let reply = self.call(&self.scripts.renew, args).await?;
            Ok(reply::array(reply, "renew")?
                .iter()
                .map(reply::string)
                .collect())
        })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a str,
        generation: Option<u64>,
        task: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CancelOutcome, Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    id.into(),
                    generation
                        .map(|g| Value::Integer(g as i64))
                        .unwrap_or_else(|| "".into()),
                    Value::Integer(self.keep_ms()),
                    self.keys.abort_channel.as_str().into(),
                    task.unwrap_or("").into(),
                ]
            };
            let reply = reply::array(
                self.call_logged(&self.scripts.cancel, &self.request(), args)
                    .await?,
                "cancel",
            )?;
            self.replicate().await?;
            let code = reply.first().map(reply::string).unwrap_or_default();
            let generation = reply.get(1).and_then(reply::opt_int).unwrap_or(0) as u64;
            Ok(match code.as_str() {
                "removed" => CancelOutcome::Removed { generation },
                "abort_signalled" => CancelOutcome::AbortSignalled {
                    generation,
                    removed_successor: reply.get(3).and_then(reply::opt_int).map(|g| g as u64),
                },
                "wrong_task" => {
                    return Err(Error::WrongTask {
                        job_id: id.to_string(),
                        expected: task.unwrap_or_default().to_string(),
                        found: reply.get(2).map(reply::string).unwrap_or_default(),
                    })
                }
                "finished" => {
                    let state = reply.get(2).map(reply::string).unwrap_or_default();
                    CancelOutcome::AlreadyFinished(
                        FinishedState::parse(&state).ok_or_else(|| corrupt("finished state"))?,
                    )
                }
                _ => CancelOutcome::NotFound,
            })
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<JobInfo>, Error>> {
        Box::pin(async move {
            let reply = reply::array(
                self.call(&self.scripts.inspect, || vec![id.into()]).await?,
                "inspect",
            )?;
            let mut sections = reply.into_iter();
            let now = reply::int(&sections.next().unwrap_or(Value::Null), "inspect now")?;
            let mut info: Option<JobInfo> = None;
            for section in sections {
                let f = reply::array(section, "inspect section")?;
                let kind = f.first().map(reply::string).unwrap_or_default();
                let ok = f.get(2).map(reply::string).unwrap_or_default() == "ok";
                if !ok {
                    return Err(Error::Corrupt(format!(
                        "the {kind} record of job {id:?} is not readable"
                    )));
                }
                let field = |i: usize| f.get(3 + i).cloned().unwrap_or(Value::Null);
                let text = |i: usize| Some(reply::string(&field(i))).filter(|s| !s.is_empty());
                let score = f.get(1).and_then(reply::opt_int);
                match kind.as_str() {
                    "active" | "pending" => {
                        if info.is_some() {
                            // Running job with a replacement waiting: report the running one.
                            continue;
                        }
                        let blocked = reply::opt_int(&field(12));
                        let (status, run_at) = if kind == "active" {
                            (
                                JobStatus::Running {
                                    attempt: reply::opt_int(&field(3)).unwrap_or(0) as u32,
                                    worker: reply::string(&field(10)),
                                },
                                reply::opt_time(&field(8)),
                            )
                        } else {
                            let run_at_ms = blocked.or(score).unwrap_or(now);
                            let at = reply::time(run_at_ms);
                            if run_at_ms <= now || blocked.is_some() {
                                (JobStatus::Queued { run_at: at }, Some(at))
                            } else {
                                (JobStatus::Deferred { run_at: at }, Some(at))
                            }
                        };
                        info = Some(JobInfo {
                            job_id: id.to_string(),
                            task: reply::string(&field(0)),
                            generation: reply::opt_int(&field(2)).unwrap_or(0) as u64,
                            status,
                            attempts: reply::opt_int(&field(3)).unwrap_or(0) as u32,
                            max_attempts: reply::opt_int(&field(4)).unwrap_or(0) as u32,
                            enqueued_at: reply::opt_time(&field(5)),
                            run_at,
                            started_at: reply::opt_time(&field(9)),
                            finished_at: None,
                            last_error: text(7),
                            result: None,
                        });
                    }
                    "result" => {
                        if info.is_some() {
                            continue;
                        }
                        let state = reply::string(&field(1));
                        let status = match FinishedState::parse(&state) {
                            Some(FinishedState::Completed) => JobStatus::Completed,
                            Some(FinishedState::Failed) => JobStatus::Failed,
                            Some(FinishedState::Cancelled) => JobStatus::Cancelled,
                            None => return Err(corrupt("result state")),
                        };
                        info = Some(JobInfo {
                            job_id: id.to_string(),
                            task: reply::string(&field(4)),
                            generation: reply::opt_int(&field(0)).unwrap_or(0) as u64,
                            status,
                            attempts: reply::opt_int(&field(5)).unwrap_or(0) as u32,
                            max_attempts: reply::opt_int(&field(10)).unwrap_or(0) as u32,
                            enqueued_at: reply::opt_time(&field(6)),
                            run_at: reply::opt_time(&field(9)),
                            started_at: reply::opt_time(&field(7)),
                            finished_at: reply::opt_time(&field(8)),
                            last_error: text(3),
                            result: text(2),
                        });
                    }
                    _ => return Err(corrupt("inspect section kind")),
                }
            }
            Ok(info)
        })
    }

    fn dead_letters(
        &self,
        offset: usize,
        count: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            // The dead letter holds at most dead_letter_cap (a u32) entries:
            // larger values mean the same and stay exact in Lua's doubles.
            let bound = |n: usize| Value::Integer(n.min(u32::MAX as usize) as i64);
            let args = || -> Vec<Value> { vec!["list".into(), bound(offset), bound(count)] };
            // Read-only: nothing to record (ttl 0).
            let read = Request {
                id: String::new(),
                ttl_ms: 0,
            };
            let reply = reply::array(
                self.call_logged(&self.scripts.dead_letters, &read, args)
                    .await?,
                "dead",
            )?;
            reply
                .into_iter()
                .map(|entry| {
                    let f = reply::array(entry, "dead entry")?;
                    let get = |i: usize| f.get(i).cloned().unwrap_or(Value::Null);
                    Ok(DeadLetter {
                        job_id: reply::string(&get(0)),
                        task: Some(reply::string(&get(1))).filter(|s| !s.is_empty()),
                        generation: reply::opt_int(&get(2)).filter(|g| *g > 0).map(|g| g as u64),
                        attempts: reply::opt_int(&get(3)).unwrap_or(0) as u32,
                        reason: reply::string(&get(4)),
                        failed_at: reply::opt_time(&get(5)),
                    })
                })
                .collect()
        })
    }

    fn requeue_dead<'a>(
        &'a self,
        id: &'a str,
        nonce: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    "requeue".into(),
                    id.into(),
                    nonce.into(),
                    self.keys.wake_channel.as_str().into(),
                ]
            };
            let reply = reply::array(
                self.call_logged(&self.scripts.dead_letters, &self.request(), args)
                    .await?,
                "requeue",
            )?;
            let code = reply.first().map(reply::string).unwrap_or_default();
            Ok((code == "requeued")
                .then(|| reply.get(1).and_then(reply::opt_int).unwrap_or(0) as u64))
        })
    }

    fn purge_dead(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let reply = reply::array(
                self.call_logged(&self.scripts.dead_letters, &self.request(), || {
                    vec!["purge".into()]
                })
                .await?,
                "purge",
            )?;
            Ok(reply.first().and_then(reply::opt_int).unwrap_or(0) as u64)
        })
    }

    fn list_pending<'a>(
        &'a self,
        task: Option<&'a str>,
        cursor: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<(String, Vec<RawPending>), Error>> {
        Box::pin(async move {
            let args = || -> Vec<Value> {
                vec![
                    task.unwrap_or("").into(),
                    cursor.into(),
                    Value::Integer(count as i64),
                ]
            };
            let reply = reply::array(self.call(&self.scripts.list, args).await?, "list")?;
            let mut items = reply.into_iter();
            let next = reply::string(&items.next().unwrap_or(Value::Null));
            let mut entries = Vec::new();
            for entry in items {
                let f = reply::array(entry, "list entry")?;
                if f.len() < 6 {
                    return Err(corrupt("list entry fields"));
                }
                let mut f = f.into_iter();
                let mut next_field = || f.next().unwrap_or(Value::Null);
                entries.push(RawPending {
                    id: reply::string(&next_field()),
                    task: reply::string(&next_field()),
                    generation: reply::opt_int(&next_field()).unwrap_or(0) as u64,
                    run_at_ms: reply::opt_int(&next_field()).unwrap_or(0),
                    attempts: reply::opt_int(&next_field()).unwrap_or(0) as u32,
                    payload: reply::bytes(next_field()),
                });
            }
            Ok((next, entries))
        })
    }

    fn audit(&self, lease: Duration) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>> {
        Box::pin(async move {
            let args = |mode: &'static str, cursor: &str| -> Vec<Value> {
                vec![
                    mode.into(),
                    cursor.into(),
                    Value::Integer(AUDIT_PAGE),
                    Value::Integer(i64::from(self.config.dead_letter_cap)),
                    Value::Integer(self.keep_ms()),
                    Value::Integer(lease.as_millis() as i64),
                ]
            };
            let counts: Vec<i64> = reply::array(
                self.call(&self.scripts.audit, || args("count", "0"))
                    .await?,
                "audit counts",
            )?
            .iter()
            .map(|v| reply::opt_int(v).unwrap_or(0))
            .collect();
            let [pending, due, active, leases] = counts[..] else {
                return Err(corrupt("audit counts"));
            };
            // Every script keeps these pairs in step: only a difference is
            // worth a walk over the namespace.
            let mut walks = Vec::new();
            if pending != due {
                walks.extend(["pending", "due"]);
            }
            if active != leases {
                walks.extend(["active", "leases"]);
            }
            let mut repaired = Vec::new();
            for mode in walks {
                let mut cursor = "0".to_string();
                loop {
                    let reply = reply::array(
                        self.call(&self.scripts.audit, || args(mode, &cursor))
                            .await?,
                        "audit",
                    )?;
                    let mut items = reply.into_iter();
                    cursor = reply::string(&items.next().unwrap_or(Value::Null));
                    for entry in items {
                        let fields = reply::array(entry, "audit entry")?;
                        let text = |i: usize| fields.get(i).map(reply::string).unwrap_or_default();
                        repaired.push((text(0), text(1)));
                    }
                    if cursor == "0" {
                        break;
                    }
                }
            }
            Ok(repaired)
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, Error>> {
        Box::pin(async move { self.subscribe_notices().await })
    }

    fn startup_warnings(&self) -> Vec<String> {
        self.warnings.as_ref().clone()
    }

    fn attach_health(&self, health: &HealthState) {
        let _ = self.health.set(health.clone());
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(watch) = self.restart_watch.lock().ok().and_then(|mut w| w.take()) {
                watch.abort();
            }
            let _ = self.client.quit().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_claim, redact};
    use fred::types::Value;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    /// A claim entry as claim.lua writes it.
    fn entry(id: &str, generation: i64, attempt: i64, fields: usize) -> Value {
        let all: Vec<Value> = vec![
            id.into(),
            "probe".into(),
            "{}".into(),
            Value::Integer(generation),
            Value::Integer(attempt),
            Value::Integer(3),
            Value::Integer(1000),
            Value::Integer(2000),
        ];
        Value::Array(all.into_iter().take(fields).collect())
    }

    #[test]
    fn one_unreadable_claim_entry_does_not_fail_the_batch() {
        let mut bad_number = match entry("bad-number", 8, 1, 8) {
            Value::Array(items) => items,
            _ => unreachable!(),
        };
        bad_number[6] = "not a time".into();
        let reply = Value::Array(vec![
            Value::Integer(5000),
            Value::Integer(-1),
            Value::Array(vec![
                entry("good", 7, 1, 8),
                entry("short", 9, 2, 6),
                Value::Array(bad_number),
                Value::Integer(1),
                entry("also-good", 10, 1, 8),
            ]),
        ]);
        let (claim, to_fail) = parse_claim(reply).expect("the batch is read");
        let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["good", "also-good"]);
        let rejected: Vec<&str> = claim.rejected.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(rejected, ["short", "bad-number", ""]);
        assert!(claim
            .rejected
            .iter()
            .all(|(_, why)| why.contains("could not be read")));
        // Those whose id and fence token were readable are failed for good
        // (dead-lettered with the reason), not left to wait out their lease.
        let failed: Vec<(&str, u64, u32, &str)> = to_fail
            .iter()
            .map(|f| (f.id.as_str(), f.generation, f.attempt, f.outcome))
            .collect();
        assert_eq!(
            failed,
            [("short", 9, 2, "fail"), ("bad-number", 8, 1, "fail")]
        );
    }
}
