//! Every Redis key and channel name of a namespace, built in one place.

use crate::api::error::Error;

/// The keys of one namespace. They share the hash tag `{namespace}`, so every
/// script touches a single Redis Cluster slot.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    namespace: String,
    /// Passed as `KEYS` to every script, in the order `common.lua` documents.
    pub(crate) script_keys: Vec<String>,
    /// Passed as `KEYS` to `enqueue_one`: due, pending, active, seq.
    pub(crate) enqueue_one_keys: Vec<String>,
    pub(crate) wake_channel: String,
    pub(crate) abort_channel: String,
    /// Where job events are published (common.lua `emit`).
    pub(crate) events_channel: String,
    /// What follows `wake` and `abort` in the channel names: empty in
    /// database 0, `:db<N>` in database N. Pub/sub ignores `SELECT`, so the
    /// same namespace in two databases of one server (two deployments: their
    /// keys are apart) would otherwise wake and abort each other's jobs.
    pub(crate) channel_scope: String,
}

/// The registry of this crate's function libraries in use (libraries.rs):
/// one key for the whole server, outside every namespace, in database 0.
/// A Redis user whose ACL allows only its namespace's keys cannot record its
/// library; then no library is deleted by it either.
pub(crate) const LIBRARY_REGISTRY: &str = "scheduler:function-libraries";

/// Key suffixes in `KEYS` order.
pub(crate) const SCRIPT_KEYS: [&str; 13] = [
    "due",
    "pending",
    "active",
    "leases",
    "results",
    "results_exp",
    "dead",
    "dead_order",
    "seq",
    "claim_log",
    "claim_exp",
    "schedules",
    "listeners",
];

impl Keys {
    /// The keys of a namespace in database 0.
    pub(crate) fn new(namespace: &str) -> Result<Self, Error> {
        Self::in_database(namespace, 0)
    }

    /// The keys of a namespace in this database (numbered as `SELECT` takes it).
    pub(crate) fn in_database(namespace: &str, database: u8) -> Result<Self, Error> {
        if namespace.is_empty()
            || namespace.len() > 64
            || namespace.contains(['{', '}'])
            || namespace
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Error::Config(format!(
                "namespace {namespace:?} must be 1 to 64 characters without braces, spaces or control characters"
            )));
        }
        let key = |suffix: &str| format!("{{{namespace}}}:{suffix}");
        // Database 0 keeps the names earlier versions used.
        let channel_scope = match database {
            0 => String::new(),
            n => format!(":db{n}"),
        };
        Ok(Keys {
            namespace: namespace.to_string(),
            script_keys: SCRIPT_KEYS.iter().map(|s| key(s)).collect(),
            enqueue_one_keys: ["due", "pending", "active", "seq"]
                .iter()
                .map(|s| key(s))
                .collect(),
            wake_channel: key("wake") + &channel_scope,
            abort_channel: key("abort") + &channel_scope,
            events_channel: key("events") + &channel_scope,
            channel_scope,
        })
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The channel of one process waiting for outcomes (`token` is its own,
    /// random: unique across databases and servers).
    pub(crate) fn finished_channel(&self, token: &str) -> String {
        format!("{{{}}}:finished:{token}", self.namespace)
    }

    /// `{namespace}:<suffix>`.
    pub(crate) fn named(&self, suffix: &str) -> String {
        format!("{{{}}}:{suffix}", self.namespace)
    }

    /// The hash of one minute's activity counts (minutes since the epoch).
    pub(crate) fn activity(&self, minute: i64) -> String {
        format!("{{{}}}:activity:{minute}", self.namespace)
    }

    /// The `listeners` entry of one stream of job events: the events
    /// channel, `#`, the stream's own token (common.lua `read_listeners`
    /// reads the channel back from it).
    pub(crate) fn events_listener(&self, token: &str) -> String {
        format!("{}#{token}", self.events_channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new("app").expect("valid");
        assert!(keys.script_keys.iter().all(|k| k.starts_with("{app}:")));
        assert_eq!(keys.script_keys[0], "{app}:due");
        assert_eq!(
            keys.enqueue_one_keys,
            ["{app}:due", "{app}:pending", "{app}:active", "{app}:seq"]
        );
        assert_eq!(keys.wake_channel, "{app}:wake");
        assert!(Keys::new("a{b").is_err());
        assert!(Keys::new("").is_err());
    }

    #[test]
    fn channels_are_scoped_by_database() {
        let zero = Keys::in_database("app", 0).expect("valid");
        let one = Keys::in_database("app", 1).expect("valid");
        assert_eq!(zero.wake_channel, "{app}:wake");
        assert_eq!(zero.abort_channel, "{app}:abort");
        assert_eq!(one.wake_channel, "{app}:wake:db1");
        assert_eq!(one.abort_channel, "{app}:abort:db1");
        assert_eq!(zero.events_listener("t"), "{app}:events#t");
        assert_eq!(one.events_listener("t"), "{app}:events:db1#t");
        // Keys are per database already: the same names.
        assert_eq!(zero.script_keys, one.script_keys);
    }
}
