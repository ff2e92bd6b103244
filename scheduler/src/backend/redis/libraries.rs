//! Deleting the function libraries of versions no longer running.
//!
//! Every release whose scripts changed loads a library of its own (its name
//! is a hash of its content, see scripts.rs), about 90 KB that Redis keeps
//! until it is deleted. So every scheduler records its library as in use in a
//! registry shared by the whole server (`libraries.lua`): when it connects
//! (before `start` returns) and every [`SEEN_EVERY`] after. At the same times it deletes, on every
//! primary, the libraries of this crate that no scheduler recorded for
//! [`STALE_AFTER`]; the operator's call is
//! [`Scheduler::drop_old_script_libraries`](crate::Scheduler::drop_old_script_libraries).
//!
//! Deleting a library that a process still uses (one that could not record
//! itself for an hour, or a version older than the registry) is not fatal:
//! its next call finds the function missing, loads the library again and
//! runs (`fcall_reloading`); a missing function ran nothing.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{Key, Value};
use tokio::task::JoinHandle;

use super::keys::LIBRARY_REGISTRY;
use super::scripts::{LIBRARY_HASH_LEN, LIBRARY_PREFIX};
use super::RedisBackend;
use crate::api::error::Error;

/// How often a scheduler records its library as in use.
pub(crate) const SEEN_EVERY: Duration = Duration::from_secs(5 * 60);

/// How long a library may go without being recorded before it is deleted:
/// twelve missed records, so that only a library no running scheduler uses
/// goes (or one whose scheduler could not reach Redis for that long, which
/// reloads it).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

impl RedisBackend {
    /// Records this scheduler's library as in use, then deletes the stale
    /// libraries of this crate on every primary: their names. Nothing (an
    /// empty list) where the scripts run with EVALSHA: this scheduler loaded
    /// no library, and its user may not delete one.
    pub(crate) async fn drop_old_libraries(&self) -> Result<Vec<String>, Error> {
        if !self.functions.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let current = self.scripts.library.name.as_str();
        // Recorded even when the listing fails: a scheduler that may load
        // its library but not list them still says it is in use.
        let loaded = self.loaded_libraries().await;
        let others: Vec<String> = match &loaded {
            Ok(names) => names.iter().filter(|n| *n != current).cloned().collect(),
            Err(_) => Vec::new(),
        };
        let stale = self.record_library(&others).await?;
        loaded?;
        let mut failure = None;
        for name in &stale {
            if let Err(e) = self.delete_library(name).await {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(stale),
        }
    }

    /// [`Self::drop_old_libraries`], logging what it did: at connect (so
    /// that a started scheduler has recorded its library) and every
    /// [`SEEN_EVERY`]. Never fails: a scheduler that cannot record its
    /// library works all the same (it deletes none).
    pub(crate) async fn upkeep_libraries(&self) {
        match self.drop_old_libraries().await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(
                    ?dropped,
                    "deleted the function libraries of scheduler versions no longer running"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "could not record the function library as in use, or delete old ones");
            }
        }
    }

    /// [`Self::upkeep_libraries`] every [`SEEN_EVERY`], until aborted.
    pub(crate) fn keep_library_recorded(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let first = tokio::time::Instant::now() + SEEN_EVERY;
            let mut every = tokio::time::interval_at(first, SEEN_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                this.upkeep_libraries().await;
            }
        })
    }

    /// `libraries.lua`: records this library, answers the stale ones of `others`.
    async fn record_library(&self, others: &[String]) -> Result<Vec<String>, Error> {
        let keys = [Key::from(LIBRARY_REGISTRY)];
        let args = || {
            let mut args = Vec::with_capacity(others.len() + 2);
            args.push(Value::from(self.scripts.library.name.as_str()));
            args.push(Value::Integer(STALE_AFTER.as_millis() as i64));
            args.extend(others.iter().map(|name| Value::from(name.as_str())));
            args
        };
        let reply = self
            .fcall_reloading(&self.client, &self.scripts.libraries, &keys, args)
            .await?;
        Ok(match reply {
            Some(Value::Array(names)) => names.iter().map(super::reply::string).collect(),
            // Functions are refused now (failed over to an older server).
            _ => Vec::new(),
        })
    }

    /// The libraries of this crate loaded on any primary.
    async fn loaded_libraries(&self) -> Result<Vec<String>, Error> {
        let pattern = format!("{LIBRARY_PREFIX}*");
        let mut names = BTreeSet::new();
        for node in self.primaries() {
            let reply: Value = self
                .client
                .with_options(&node)
                .function_list(Some(pattern.as_str()), false)
                .await
                .map_err(|e| self.error(e))?;
            names.extend(libraries_of_this_crate(&reply));
        }
        Ok(names.into_iter().collect())
    }

    /// FUNCTION DELETE on every primary (one that has no such library is fine).
    async fn delete_library(&self, name: &str) -> Result<(), Error> {
        for node in self.primaries() {
            let deleted: Result<Value, _> =
                self.client.with_options(&node).function_delete(name).await;
            match deleted {
                Ok(_) => {}
                Err(e) if e.details().contains("Library not found") => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }

    /// Where a FUNCTION command must go to reach every library: each primary
    /// of a cluster (the client keeps a connection to each), else the one
    /// server.
    fn primaries(&self) -> Vec<Options> {
        if !self.client.is_clustered() {
            return vec![Options::default()];
        }
        self.client
            .active_connections()
            .into_iter()
            .map(|server| Options {
                cluster_node: Some(server),
                ..Options::default()
            })
            .collect()
    }
}

/// The names in a FUNCTION LIST reply of the libraries this crate loaded:
/// named `scheduler_` and 12 hexadecimal digits, and registering
/// `<name>_claim`. Another application's library that merely starts with
/// `scheduler_` is never taken for one.
pub(crate) fn libraries_of_this_crate(reply: &Value) -> Vec<String> {
    let Value::Array(libraries) = reply else {
        return Vec::new();
    };
    libraries
        .iter()
        .filter_map(|library| {
            let name = field(library, "library_name")?.as_str()?.into_owned();
            let hash = name.strip_prefix(LIBRARY_PREFIX)?;
            let shaped = hash.len() == LIBRARY_HASH_LEN
                && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let claim = format!("{name}_claim");
            let Some(Value::Array(functions)) = field(library, "functions") else {
                return None;
            };
            let registers_claim = functions.iter().any(|function| {
                field(function, "name").and_then(|n| n.as_str()).as_deref() == Some(claim.as_str())
            });
            (shaped && registers_claim).then_some(name)
        })
        .collect()
}

/// One field of a reply entry: a flat array of names and values (RESP2) or a
/// map (RESP3).
fn field<'a>(entry: &'a Value, name: &str) -> Option<&'a Value> {
    match entry {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair[0].as_str().as_deref() == Some(name))
            .and_then(|pair| pair.get(1)),
        Value::Map(map) => map.get(&Key::from(name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(name: &str, functions: &[&str]) -> Value {
        let functions = functions
            .iter()
            .map(|f| Value::Array(vec!["name".into(), (*f).into(), "flags".into()]))
            .collect();
        Value::Array(vec![
            "library_name".into(),
            name.into(),
            "engine".into(),
            "LUA".into(),
            "functions".into(),
            Value::Array(functions),
        ])
    }

    #[test]
    fn only_libraries_named_and_shaped_like_this_crates_are_taken() {
        let reply = Value::Array(vec![
            library("scheduler_0123456789ab", &["scheduler_0123456789ab_claim"]),
            // Another application's library with the same prefix.
            library("scheduler_jobs", &["scheduler_jobs_claim"]),
            // The right shape, but not this crate's functions.
            library("scheduler_abcdefabcdef", &["other"]),
            library("scheduler_ABCDEF012345", &["scheduler_ABCDEF012345_claim"]),
            library("mylib", &["mylib_claim"]),
        ]);
        assert_eq!(
            libraries_of_this_crate(&reply),
            vec!["scheduler_0123456789ab".to_string()]
        );
        assert!(libraries_of_this_crate(&Value::Null).is_empty());
    }

    #[test]
    fn the_current_library_is_recognised_as_one_of_this_crates() {
        let scripts = super::super::scripts::Scripts::new(super::super::scripts::Publish::Plain);
        let name = scripts.library.name.as_str();
        let reply = Value::Array(vec![library(name, &[scripts.claim.function.as_str()])]);
        assert_eq!(libraries_of_this_crate(&reply), vec![name.to_string()]);
    }
}
