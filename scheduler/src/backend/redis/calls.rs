//! How a script is sent: once, re-sent after a connection failure where that is
//! safe, and through `common.lua`'s reply log where it changes state.

use std::sync::atomic::Ordering;

use fred::prelude::*;
use fred::types::{Key, Value};

use super::transitions::push_job_values;
use crate::backend::redis::scripts::{KeySet, Lua};
use crate::backend::redis::RedisBackend;
use crate::backend::{user_request_key, user_request_ttl_ms, NewJob};
use crate::Error;

impl RedisBackend {
    /// Runs one script that is safe to run twice (it reads, or re-running it
    /// changes nothing: `renew`), re-sending it after a connection failure.
    ///
    /// `args` builds the arguments; it runs again for each send, so that the
    /// usual call moves them instead of keeping a copy (cloning a few thousand
    /// `Bytes` per bulk call cost measurable client CPU).
    pub(super) async fn call(
        &self,
        lua: &Lua,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Value, Error> {
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
    pub(super) async fn call_logged(
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

    /// Sends one script once: FCALL of its function with the keys it
    /// declares (see [`Self::fcall_reloading`]), or EVALSHA with every key of
    /// the namespace where functions were refused.
    pub(super) async fn send(
        &self,
        lua: &Lua,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Value, Error> {
        if self.functions.load(Ordering::Relaxed) {
            let keys = match lua.keys {
                KeySet::All => &self.script_keys,
                KeySet::Cancel => &self.cancel_keys,
            };
            let reply = self
                .fcall_reloading(&self.client, &lua.function, keys, &args)
                .await?;
            if let Some(reply) = reply {
                return Ok(reply);
            }
        }
        lua.script()
            .evalsha_with_reload::<Value, _, _>(&self.client, self.script_keys.clone(), args())
            .await
            .map_err(|e| self.error(e))
    }

    /// A fresh request id for one state-changing call of this process, kept
    /// in the reply log for the re-send window.
    pub(super) fn request(&self) -> Request {
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
    pub(super) fn enqueue_request(&self, mode: &str, jobs: &[NewJob]) -> Request {
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
    pub(super) fn resend_window_ms(&self) -> i64 {
        (self.config.command_timeout.as_millis() as i64)
            .saturating_mul(i64::from(SENDS) + 1)
            .max(RESEND_WINDOW_MIN_MS)
    }

    /// FCALL of `function` through `client`, loading the library again and
    /// retrying when the server lost it (restart, FUNCTION FLUSH, failover,
    /// or a newer version deleting the libraries it takes for unused, see
    /// libraries.rs), as EVALSHA reloads on NOSCRIPT. The retry is safe: a
    /// missing function ran nothing. It is retried up to [`RELOADS`] times,
    /// as the library may be deleted again between the load and the retry
    /// (two deleting schedulers, one node of a cluster after another).
    /// `None` when the server now refuses functions (e.g. failed over to an
    /// older server): the caller uses EVALSHA.
    pub(super) async fn fcall_reloading<C: FunctionInterface + Sync>(
        &self,
        client: &C,
        function: &str,
        keys: &[Key],
        args: impl Fn() -> Vec<Value>,
    ) -> Result<Option<Value>, Error> {
        let fcall = || client.fcall::<Value, _, _, _>(function, keys.to_vec(), args());
        let mut reloads = 0;
        loop {
            match fcall().await {
                Err(e)
                    if e.details().starts_with("ERR Function not found") && reloads < RELOADS =>
                {
                    reloads += 1;
                    match self.load_library().await {
                        Ok(()) => {}
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => {
                            self.use_evalsha(&e);
                            return Ok(None);
                        }
                    }
                }
                result => return result.map(Some).map_err(|e| self.error(e)),
            }
        }
    }

    /// Sends the first request for one job to `enqueue_one` (see its header),
    /// exactly once: a re-send after a lost reply must go to `enqueue.lua`
    /// with the same request id, which answers from the reply log or finds a
    /// job that the first send created by its nonce. `None` when the server
    /// now refuses functions (the caller then uses `enqueue.lua`).
    pub(super) async fn enqueue_first_send(
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
    pub(super) async fn replicate(&self) -> Result<(), Error> {
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
}

/// Sends of one script call at most: the first and two re-sends after
/// connection failures.
pub(super) const SENDS: u32 = 3;

/// Loads of the library within one call at most, when its function is missing.
pub(super) const RELOADS: u32 = 3;

/// The shortest time a reply stays in the reply log.
pub(super) const RESEND_WINDOW_MIN_MS: i64 = 60_000;

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
pub(super) fn push_request(args: &mut Vec<Value>, request: &Request) {
    if request.ttl_ms <= 0 {
        args.push("".into());
    } else {
        args.push(format!("{}:{}", request.ttl_ms, request.id).into());
    }
}
