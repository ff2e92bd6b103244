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
    /// Passed as `KEYS` to `cancel_one` ([`CANCEL_KEYS`]).
    pub(crate) cancel_keys: Vec<String>,
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

/// The stored layout this version writes and the newest it reads. A
/// namespace records its layout in `{namespace}:layout` (absent: 1); a
/// version that reads an older one refuses to start on it
/// ([`Error::NewerLayout`]), so a rollback past a change of layout fails
/// loudly instead of misreading jobs. Every layout so far is 1: the changes
/// made until now are read both ways (docs/operations.md, upgrading).
pub(crate) const STORED_LAYOUT: u64 = 1;

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

/// The keys `cancel_one.lua` declares, in its order.
pub(crate) const CANCEL_KEYS: [&str; 6] = [
    "due",
    "pending",
    "active",
    "results",
    "results_exp",
    "listeners",
];

impl Keys {
    /// The keys of a namespace in database 0.
    pub(crate) fn new(namespace: &str) -> Result<Self, Error> {
        Self::in_database(namespace, 0)
    }

    /// The keys of a namespace in this database (numbered as `SELECT` takes it).
    pub(crate) fn in_database(namespace: &str, database: u8) -> Result<Self, Error> {
        validate_namespace(namespace)?;
        Ok(Self::of_tag(namespace, database))
    }

    /// The keys of a hash tag in this database, the tag taken as it is: a
    /// namespace already checked, or a shard of one ([`shard_tags`]).
    pub(crate) fn of_tag(namespace: &str, database: u8) -> Self {
        let key = |suffix: &str| format!("{{{namespace}}}:{suffix}");
        // Database 0 keeps the names earlier versions used.
        let channel_scope = match database {
            0 => String::new(),
            n => format!(":db{n}"),
        };
        Keys {
            namespace: namespace.to_string(),
            script_keys: SCRIPT_KEYS.iter().map(|s| key(s)).collect(),
            enqueue_one_keys: ["due", "pending", "active", "seq"]
                .iter()
                .map(|s| key(s))
                .collect(),
            cancel_keys: CANCEL_KEYS.iter().map(|s| key(s)).collect(),
            wake_channel: key("wake") + &channel_scope,
            abort_channel: key("abort") + &channel_scope,
            events_channel: key("events") + &channel_scope,
            channel_scope,
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// What every key name of this namespace starts with: `{namespace}:`.
    pub(crate) fn prefix(&self) -> String {
        format!("{{{}}}:", self.namespace)
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

/// Refuses a namespace that cannot be a hash tag: empty, over 64 characters,
/// with a brace, a space or a control character.
pub(crate) fn validate_namespace(namespace: &str) -> Result<(), Error> {
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
    Ok(())
}

/// Redis Cluster's hash slots.
const SLOTS: u32 = 16_384;

/// The hash tags of a namespace split into `shards`: the namespace itself for
/// one shard (the layout of an unsharded namespace), else
/// `<namespace>/<i>-of-<n>.<k>` for shard `i`, `k` the smallest number that
/// puts the tag's slot in the `i`-th of `n` equal slot ranges. Cluster nodes
/// are usually given equal contiguous ranges, so the shards spread over the
/// masters as evenly as the masters allow; the tags depend on nothing but
/// the namespace and `n`, so every process computes the same ones.
pub(crate) fn shard_tags(namespace: &str, shards: u16) -> Vec<String> {
    if shards <= 1 {
        return vec![namespace.to_string()];
    }
    let n = u32::from(shards);
    (0..n)
        .map(|i| {
            let base = format!("{namespace}/{i}-of-{n}");
            (0u32..)
                .map(|k| format!("{base}.{k}"))
                .find(|tag| {
                    let slot =
                        u32::from(fred::util::redis_keyslot(format!("{{{tag}}}").as_bytes()));
                    slot * n / SLOTS == i
                })
                .unwrap_or(base)
        })
        .collect()
}

/// The shard (index into [`shard_tags`]) of a job id: FNV-1a (64 bits) of
/// its bytes modulo the number of shards, except the ticks of schedules
/// (`schedule:` ids), which live beside the schedules, in shard 0. Stable:
/// the same in every process and every version.
pub(crate) fn shard_of(id: &str, shards: usize) -> usize {
    if shards <= 1 || id.starts_with(crate::periodic::store::TICK_PREFIX) {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards as u64) as usize
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
        assert_eq!(
            keys.cancel_keys,
            [
                "{app}:due",
                "{app}:pending",
                "{app}:active",
                "{app}:results",
                "{app}:results_exp",
                "{app}:listeners"
            ]
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

    #[test]
    fn one_shard_is_the_namespace_itself() {
        assert_eq!(shard_tags("app", 1), ["app"]);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn shard_tags_fall_in_their_own_slot_range_and_are_stable() {
        for n in [2u16, 3, 6, 30] {
            let tags = shard_tags("app", n);
            assert_eq!(tags.len(), n as usize);
            for (i, tag) in tags.iter().enumerate() {
                let slot = u32::from(fred::util::redis_keyslot(format!("{{{tag}}}").as_bytes()));
                assert_eq!((slot * u32::from(n) / SLOTS) as usize, i, "{tag}");
                assert!(tag.starts_with(&format!("app/{i}-of-{n}.")), "{tag}");
            }
            assert_eq!(tags, shard_tags("app", n));
        }
        // Another count gives other tags: two layouts never share a shard.
        let three = shard_tags("app", 3);
        assert!(shard_tags("app", 6).iter().all(|t| !three.contains(t)));
    }

    #[test]
    fn ids_spread_over_shards_and_ticks_stay_in_the_first() {
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c; the value pins the hash for
        // every version and every other client.
        assert_eq!(shard_of("a", 7), (0xaf63_dc4c_8601_ec8c_u64 % 7) as usize);
        let mut per_shard = [0usize; 4];
        for i in 0..4000 {
            per_shard[shard_of(&format!("job-{i}"), 4)] += 1;
        }
        assert!(
            per_shard.iter().all(|&c| (800..1200).contains(&c)),
            "{per_shard:?}"
        );
        assert_eq!(shard_of("schedule:daily:1780000000000", 4), 0);
    }
}
