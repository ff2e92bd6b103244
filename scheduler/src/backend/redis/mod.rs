//! The Redis side of every state transition: one script call each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{ReconnectPolicy, UnresponsiveConfig};
use fred::types::{CustomCommand, InfoKind, Key, Value};

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::keys::Keys;
use self::scripts::{Publish, Scripts};
use crate::api::config::SchedulerConfig;
use crate::api::error::{Error, RedisError};
use crate::ops::health::HealthState;

pub(crate) mod keys;
pub(crate) mod reply;
pub(crate) mod scripts;

/// Entries an audit walk reads per script call.
const AUDIT_PAGE: i64 = 500;
/// The wake channel message of `schedules.lua` after a put or a resume:
/// planners read the schedules again (`SCHEDULES_CHANGED` there).
const SCHEDULES_CHANGED: &str = "schedules";

/// Key names as fred takes them (`KEYS` of a script call).
fn fred_keys(names: &[String]) -> Vec<Key> {
    names.iter().map(|k| Key::from(k.as_str())).collect()
}

/// Connection and scripts of one namespace.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    url: String,
    pub(crate) client: Client,
    keys: Keys,
    script_keys: Vec<Key>,
    /// `enqueue_one`'s keys: due, pending, active, seq.
    enqueue_one_keys: Vec<Key>,
    /// `cancel_one`'s keys (`keys::CANCEL_KEYS`).
    cancel_keys: Vec<Key>,
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
    /// Background tasks, aborted by `close`: the watch of reconnects for a
    /// restart that lost the data, and the upkeep of the function library
    /// (libraries.rs).
    watches: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// A shard of a sharded namespace: its limits are kept in the home
    /// shard ([`global_limits`]), and a claim parks the limited jobs it meets.
    global_limits: bool,
    /// How the scripts publish, and so how this process subscribes.
    publish: Publish,
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
        let namespace = config.namespace.clone();
        let mut shards = Self::connect_tags(url, config, &[namespace]).await?;
        shards
            .pop()
            .ok_or_else(|| Error::Config("no namespace to connect".into()))
    }

    /// One backend per hash tag (the shards of a namespace, see
    /// [`keys::shard_tags`]), all on one connection: the first checks the
    /// server and loads the scripts; each watches its own generation counter.
    pub(crate) async fn connect_tags(
        url: &str,
        config: SchedulerConfig,
        tags: &[String],
    ) -> Result<Vec<Self>, Error> {
        keys::validate_namespace(&config.namespace)?;
        // Pub/sub ignores SELECT: channels are scoped by the database (keys.rs).
        let database = Config::from_url(url)
            .ok()
            .and_then(|c| c.database)
            .unwrap_or(0);
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
                return Err(Error::Unavailable(RedisError::new(format!(
                    "could not connect to {} within {timeout:?}",
                    redact(url)
                ))));
            }
        }
        let warnings = Arc::new(startup_warnings(&client).await);
        for warning in warnings.iter() {
            tracing::warn!(warning = %warning, "risky redis configuration");
        }
        let functions = Arc::new(AtomicBool::new(false));
        let publish = subscriptions::publish_form(&client);
        let scripts = Scripts::new(publish);
        let stores: Vec<RedisBackend> = tags
            .iter()
            .map(|tag| {
                let keys = Keys::of_tag(tag, database);
                RedisBackend {
                    warnings: Arc::clone(&warnings),
                    known_generation: Arc::new(AtomicU64::new(0)),
                    health: Arc::new(OnceLock::new()),
                    watches: Arc::new(Mutex::new(Vec::new())),
                    url: url.to_string(),
                    client: client.clone(),
                    script_keys: fred_keys(&keys.script_keys),
                    enqueue_one_keys: fred_keys(&keys.enqueue_one_keys),
                    cancel_keys: fred_keys(&keys.cancel_keys),
                    keys,
                    scripts: scripts.clone(),
                    functions: Arc::clone(&functions),
                    config: config.clone(),
                    global_limits: false,
                    publish,
                }
            })
            .collect();
        let Some(first) = stores.first() else {
            return Err(Error::Config("no namespace to connect".into()));
        };
        first.load_scripts().await?;
        first.upkeep_libraries().await;
        let run_id = first.run_id().await;
        if let Ok(mut slot) = first.watches.lock() {
            slot.push(first.keep_library_recorded());
        }
        for store in &stores {
            store.check_layout().await?;
            if let Some(seq) = store.generation_counter().await {
                store.saw_generation(seq);
            }
            let watch = store.watch_restarts(run_id.clone());
            if let Ok(mut slot) = store.watches.lock() {
                slot.push(watch);
            }
        }
        Ok(stores)
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

    /// Refuses a namespace stored in a layout newer than this version reads
    /// ([`keys::STORED_LAYOUT`]).
    pub(super) async fn check_layout(&self) -> Result<(), Error> {
        let key = format!("{}layout", self.keys.prefix());
        let stored: Option<String> = self
            .client
            .get(key.as_str())
            .await
            .map_err(|e| self.error(e))?;
        let Some(stored) = stored else {
            return Ok(());
        };
        match stored.trim().parse::<u64>() {
            Ok(n) if n <= keys::STORED_LAYOUT => Ok(()),
            Ok(n) => Err(Error::NewerLayout {
                namespace: self.keys.namespace().to_string(),
                stored: n,
                supported: keys::STORED_LAYOUT,
            }),
            Err(_) => Err(Error::Corrupt(format!(
                "{key} holds {stored:?}, not a layout number"
            ))),
        }
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
            lua.script()
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
        if matches!(refusal, Error::NoPermission(_)) {
            tracing::info!(
                library = %self.scripts.library.name,
                reason = %refusal,
                "redis refused the scheduler's function library; calling its scripts with EVALSHA"
            );
        } else {
            // Not an ACL: a server without FUNCTION (before 7.0), or a
            // library this server cannot compile (a bug of this version).
            tracing::warn!(
                library = %self.scripts.library.name,
                reason = %refusal,
                "redis did not load the scheduler's function library; calling its scripts with EVALSHA"
            );
        }
    }

    pub(crate) fn error(&self, e: fred::error::Error) -> Error {
        Error::from_redis(e, self.config.command_timeout)
    }

    fn keep_ms(&self) -> i64 {
        self.config.keep_result.as_millis() as i64
    }
}

pub(crate) mod calls;
mod decode;
mod global_limits;
mod inspection;
mod libraries;
mod record;
mod schedules;
pub(crate) mod sharded;
mod subscriptions;
mod transitions;

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
