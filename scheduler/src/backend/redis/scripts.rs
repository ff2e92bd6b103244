//! The Lua scripts, one state transition each, in two forms built from the
//! same sources: a Redis function library (FUNCTION LOAD once, FCALL per
//! call) and, for servers that refuse functions, one script each for EVALSHA.
//!
//! Why functions: EVALSHA re-runs `common.lua`'s top level at every call,
//! creating its helper closures again (about 19k of the 169k instructions a
//! single-job enqueue costs redis-server); a library defines them once, when
//! it is loaded.

use std::sync::{Arc, OnceLock};

use fred::types::scripts::Script;

const COMMON: &str = include_str!("scripts/common.lua");

/// The line of `common.lua` naming the command notices go out with.
const PUBLISH_LINE: &str = "local PUBLISH = 'PUBLISH'\n";

/// How the scripts publish their notices (wakes, aborts, outcomes, events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    /// `PUBLISH`, heard by `SUBSCRIBE`: a standalone server, or a cluster
    /// older than Redis 7.0 (where every node receives every message).
    Plain,
    /// `SPUBLISH`, heard by `SSUBSCRIBE` (Redis 7.0+ on a cluster): only the
    /// nodes of the shard that owns the channel's slot carry the message, so
    /// a notice costs one shard, not the whole cluster.
    Sharded,
}

impl Publish {
    /// `common.lua` as this form of the scripts runs it.
    fn common(self) -> String {
        match self {
            Publish::Plain => COMMON.to_string(),
            Publish::Sharded => COMMON.replacen(PUBLISH_LINE, "local PUBLISH = 'SPUBLISH'\n", 1),
        }
    }
}

/// The script sources: name, body, function flags in the library form, and
/// whether the script changes state and so goes through `common.lua`'s reply
/// log (`logged`: its calls end with the request's ttl and id).
///
/// `no-writes` marks the read-only scripts; `allow-oom` keeps the scripts that
/// only move existing jobs runnable at maxmemory, as EVAL allows a script
/// whose first write does not add data (a function without it is refused
/// whole under OOM). Enqueue, which adds jobs, is refused, as with EVAL.
///
/// `claim` keeps its own log (the ids it took, under the worker's id): a
/// replayed reply would carry every payload again. `complete` and `renew`
/// need none: fenced by (generation, attempt), which is never handed out
/// twice, run again they change nothing (`complete` answers 'stale', `renew`
/// extends the same leases). The read-only scripts need none; nor does
/// `audit`, which repairs whatever is left to repair each time it runs.
const SOURCES: [(&str, &str, &str, bool); 17] = [
    ("enqueue", include_str!("scripts/enqueue.lua"), "", true),
    (
        "claim",
        include_str!("scripts/claim.lua"),
        "allow-oom",
        false,
    ),
    (
        "complete",
        include_str!("scripts/complete.lua"),
        "allow-oom",
        false,
    ),
    (
        "renew",
        include_str!("scripts/renew.lua"),
        "allow-oom",
        false,
    ),
    (
        "cancel",
        include_str!("scripts/cancel.lua"),
        "allow-oom",
        true,
    ),
    (
        "inspect",
        include_str!("scripts/inspect.lua"),
        "no-writes",
        false,
    ),
    (
        "dead_letters",
        include_str!("scripts/dead_letters.lua"),
        "allow-oom",
        true,
    ),
    ("list", include_str!("scripts/list.lua"), "no-writes", false),
    (
        "audit",
        include_str!("scripts/audit.lua"),
        "allow-oom",
        false,
    ),
    ("schedules", include_str!("scripts/schedules.lua"), "", true),
    (
        "counts",
        include_str!("scripts/counts.lua"),
        "no-writes",
        false,
    ),
    (
        "listeners",
        include_str!("scripts/listeners.lua"),
        "allow-oom",
        false,
    ),
    ("progress", include_str!("scripts/progress.lua"), "", false),
    (
        "browse",
        include_str!("scripts/browse.lua"),
        "no-writes",
        false,
    ),
    (
        "reschedule",
        include_str!("scripts/reschedule.lua"),
        "allow-oom",
        false,
    ),
    (
        "grants",
        include_str!("scripts/grants.lua"),
        "allow-oom",
        false,
    ),
    (
        "granted",
        include_str!("scripts/granted.lua"),
        "allow-oom",
        false,
    ),
];

/// Scripts of the library only (no EVALSHA form): name, body, flags. Their
/// bodies read their own KEYS (no `bind`), and may call the functions above
/// them (`run_<name>`), as `enqueue_one` hands a rare case to `run_enqueue`.
const LIBRARY_ONLY: [(&str, &str, &str, bool); 3] = [
    (
        "enqueue_one",
        include_str!("scripts/enqueue_one.lua"),
        "",
        false,
    ),
    (
        "cancel_one",
        include_str!("scripts/cancel_one.lua"),
        "allow-oom",
        false,
    ),
    (
        "libraries",
        include_str!("scripts/libraries.lua"),
        "",
        false,
    ),
];

/// One script: its function's name in the library and its EVALSHA form.
#[derive(Clone, Debug)]
pub(crate) struct Lua {
    /// `scheduler_<hash>_<name>`.
    pub(crate) function: String,
    /// The keys FCALL passes `function`.
    pub(crate) keys: KeySet,
    eval: Arc<EvalForm>,
}

/// A script's EVALSHA form, built when first used: only where a server
/// refuses functions. (Building all of them, each `common.lua` and a body
/// with its SHA-1, cost every start about 22 million instructions in a
/// release build, most of the time a scheduler took to start.)
#[derive(Debug)]
struct EvalForm {
    common: Arc<str>,
    body: &'static str,
    logged: bool,
    script: OnceLock<Script>,
}

impl Lua {
    /// `common.lua`, the key binding, the body, for EVALSHA (which passes it
    /// every key of the namespace).
    pub(crate) fn script(&self) -> &Script {
        let eval = &*self.eval;
        eval.script
            .get_or_init(|| Script::from_lua(eval_form(&eval.common, eval.body, eval.logged)))
    }
}

/// Which of a namespace's keys a function of the library is called with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySet {
    /// All of them, in `common.lua`'s order (`keys::SCRIPT_KEYS`).
    All,
    /// Those a cancel touches (`cancel_one.lua`, `keys::CANCEL_KEYS`).
    Cancel,
}

/// The function library holding every script.
#[derive(Clone, Debug)]
pub(crate) struct Library {
    /// `scheduler_<hash>`: content-addressed, so that two versions of the code
    /// (a rolling deploy) load two libraries and never replace each other's.
    pub(crate) name: String,
    /// The text for FUNCTION LOAD.
    pub(crate) code: String,
}

/// Every script, with `common.lua` prepended.
#[derive(Clone, Debug)]
pub(crate) struct Scripts {
    pub(crate) enqueue: Lua,
    pub(crate) claim: Lua,
    pub(crate) complete: Lua,
    pub(crate) renew: Lua,
    pub(crate) cancel: Lua,
    pub(crate) inspect: Lua,
    pub(crate) dead_letters: Lua,
    pub(crate) list: Lua,
    /// Finds and repairs records that lost their index entry or the reverse.
    pub(crate) audit: Lua,
    /// Periodic schedules: list, put, plan, pause, resume, remove.
    pub(crate) schedules: Lua,
    /// How many jobs are in each state.
    pub(crate) counts: Lua,
    /// Registers or removes a channel waiting for outcomes.
    pub(crate) listeners: Lua,
    /// Records a running attempt's progress (fenced).
    pub(crate) progress: Lua,
    /// One page of the jobs in a state, from its index.
    pub(crate) browse: Lua,
    /// Moves a pending job to another run time.
    pub(crate) reschedule: Lua,
    /// The limits of a sharded namespace, in its home shard.
    pub(crate) grants: Lua,
    /// A shard's side of them: starting granted jobs, parking refused ones.
    pub(crate) granted: Lua,
    /// The name of `enqueue_one`'s function (library only: the first send of
    /// one job, see the script's header).
    pub(crate) enqueue_one: String,
    /// The name of `libraries`' function (library only: records this
    /// library as in use, names the stale ones; see libraries.rs).
    pub(crate) libraries: String,
    pub(crate) library: Library,
}

/// The EVAL form: the body runs as a function of the call's KEYS and ARGV
/// (a logged one through `logged`). A function, not the chunk's top level:
/// Lua allows a function 200 locals, and `common.lua`'s and a long body's
/// together would pass it.
fn eval_form(common: &str, body: &str, logged: bool) -> String {
    let call = if logged {
        "logged(body, KEYS, ARGV)"
    } else {
        "body(KEYS, ARGV)"
    };
    format!("{common}\nbind(KEYS)\nlocal function body(KEYS, ARGV)\n{body}\nend\nreturn {call}")
}

/// The library's functions, after `common.lua`: each body wrapped in a function
/// taking KEYS and ARGV as parameters, so that it runs verbatim (a logged
/// one as `body_<name>`, which `run_<name>` calls through `logged`).
fn library_functions(prefix: &str) -> String {
    let mut code = String::new();
    let bound = SOURCES.iter().map(|source| (source, "bind(KEYS)\n"));
    let own_keys = LIBRARY_ONLY.iter().map(|source| (source, ""));
    for ((name, body, flags, logged), bind) in bound.chain(own_keys) {
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(", flags = {{'{flags}'}}")
        };
        if *logged {
            code.push_str(&format!(
                "\nlocal function body_{name}(KEYS, ARGV)\n{body}\nend\n\
                 local function run_{name}(KEYS, ARGV)\n{bind}return logged(body_{name}, KEYS, ARGV)\nend\n"
            ));
        } else {
            code.push_str(&format!(
                "\nlocal function run_{name}(KEYS, ARGV)\n{bind}{body}\nend\n"
            ));
        }
        code.push_str(&format!(
            "redis.register_function{{function_name = '{prefix}_{name}', callback = run_{name}{flags}}}\n"
        ));
    }
    code
}

/// What every library name of this crate starts with, before the 12
/// hexadecimal digits of its hash.
pub(crate) const LIBRARY_PREFIX: &str = "scheduler_";

/// The digits of the hash in a library name.
pub(crate) const LIBRARY_HASH_LEN: usize = 12;

/// The library text, named after a hash of its own content (so the two
/// forms of [`Publish`] are two libraries).
fn library(common: &str) -> Library {
    // The hash covers everything but the name, which is derived from it.
    let hash = fred::util::sha1_hash(&format!("{common}{}", library_functions("scheduler")));
    let name = format!("{LIBRARY_PREFIX}{}", &hash[..LIBRARY_HASH_LEN]);
    let code = format!("#!lua name={name}\n{common}{}", library_functions(&name));
    Library { name, code }
}

impl Scripts {
    pub(crate) fn new(publish: Publish) -> Self {
        let common: Arc<str> = publish.common().into();
        let library = library(&common);
        let lua = |i: usize| {
            let (name, body, _, logged) = SOURCES[i];
            Lua {
                function: format!("{}_{name}", library.name),
                keys: KeySet::All,
                eval: Arc::new(EvalForm {
                    common: Arc::clone(&common),
                    body,
                    logged,
                    script: OnceLock::new(),
                }),
            }
        };
        // A cancel is FCALLed as cancel_one, with the keys it touches.
        let cancel = Lua {
            function: format!("{}_{}", library.name, LIBRARY_ONLY[1].0),
            keys: KeySet::Cancel,
            ..lua(4)
        };
        Scripts {
            enqueue: lua(0),
            claim: lua(1),
            complete: lua(2),
            renew: lua(3),
            cancel,
            inspect: lua(5),
            dead_letters: lua(6),
            list: lua(7),
            audit: lua(8),
            schedules: lua(9),
            counts: lua(10),
            listeners: lua(11),
            progress: lua(12),
            browse: lua(13),
            reschedule: lua(14),
            grants: lua(15),
            granted: lua(16),
            enqueue_one: format!("{}_{}", library.name, LIBRARY_ONLY[0].0),
            libraries: format!("{}_{}", library.name, LIBRARY_ONLY[2].0),
            library,
        }
    }

    pub(crate) fn all(&self) -> [&Lua; 17] {
        [
            &self.enqueue,
            &self.claim,
            &self.complete,
            &self.renew,
            &self.cancel,
            &self.inspect,
            &self.dead_letters,
            &self.list,
            &self.audit,
            &self.schedules,
            &self.counts,
            &self.listeners,
            &self.progress,
            &self.browse,
            &self.reschedule,
            &self.grants,
            &self.granted,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script's EVALSHA form is built when first asked for, once, and is
    /// `common.lua` (of the form's PUBLISH) with the body.
    #[test]
    fn an_evalsha_form_is_built_on_first_use_once() {
        let scripts = Scripts::new(Publish::Sharded);
        assert!(scripts
            .all()
            .iter()
            .all(|lua| lua.eval.script.get().is_none()));
        let claim = scripts.claim.script();
        let text = eval_form(&Publish::Sharded.common(), SOURCES[1].1, false);
        assert_eq!(claim.lua().map(|l| &l[..]), Some(text.as_str()));
        assert_eq!(&claim.sha1()[..], fred::util::sha1_hash(&text));
        assert!(std::ptr::eq(claim, scripts.claim.clone().script()));
        assert!(scripts.cancel.eval.script.get().is_none());
        let cancel = scripts.cancel.script().lua().map(|l| l.to_string());
        assert_eq!(
            cancel,
            Some(eval_form(&Publish::Sharded.common(), SOURCES[4].1, true))
        );
    }

    #[test]
    fn the_library_is_named_after_its_content() {
        let scripts = Scripts::new(Publish::Plain);
        let lib = &scripts.library;
        assert!(lib.code.starts_with(&format!("#!lua name={}\n", lib.name)));
        assert_eq!(lib.name.len(), "scheduler_".len() + 12);
        for (lua, (name, _, _, _)) in scripts.all().into_iter().zip(SOURCES) {
            if name == "cancel" {
                assert_eq!(lua.function, format!("{}_cancel_one", lib.name));
                assert_eq!(lua.keys, KeySet::Cancel);
            } else {
                assert_eq!(lua.function, format!("{}_{name}", lib.name));
                assert_eq!(lua.keys, KeySet::All);
            }
            assert!(lib.code.contains(&format!("'{}'", lua.function)));
        }
        assert!(lib.code.contains(&format!("'{}'", scripts.enqueue_one)));
        assert!(lib.code.contains(&format!("'{}'", scripts.libraries)));
        assert_eq!(Scripts::new(Publish::Plain).library.name, lib.name);
        assert_ne!(Scripts::new(Publish::Sharded).library.name, lib.name);
    }

    /// Every notice goes out with `common.lua`'s PUBLISH, which the sharded
    /// form turns into SPUBLISH: no script names the command itself.
    #[test]
    fn every_notice_goes_out_with_the_forms_command() {
        assert!(COMMON.contains(PUBLISH_LINE));
        let sharded = Publish::Sharded.common();
        assert!(sharded.contains("local PUBLISH = 'SPUBLISH'\n"));
        assert!(!sharded.contains(PUBLISH_LINE));
        let sources = SOURCES.iter().chain(LIBRARY_ONLY.iter());
        let mut sites = 0;
        for (name, body, _, _) in sources.chain([&("common", COMMON, "", false)]) {
            assert!(
                !body.contains("'PUBLISH'") || *name == "common",
                "{name}.lua names PUBLISH itself"
            );
            assert!(!body.contains("'SPUBLISH'"), "{name}.lua names SPUBLISH");
            sites += body.matches("redis.call(PUBLISH,").count();
        }
        assert!(sites >= 10, "{sites} publish sites");
        let library = Scripts::new(Publish::Sharded).library.code;
        assert_eq!(library.matches("'PUBLISH'").count(), 0);
        assert_eq!(library.matches("'SPUBLISH'").count(), 1);
    }

    /// cancel_one.lua hands cancel.lua the namespace's 13 keys in
    /// `SCRIPT_KEYS` order: the ones it declares (`CANCEL_KEYS`, its KEYS)
    /// where they belong, the others named from the prefix.
    #[test]
    fn cancel_one_passes_every_key_in_keys_order() {
        use crate::backend::redis::keys::{CANCEL_KEYS, SCRIPT_KEYS};
        let source = include_str!("scripts/cancel_one.lua");
        let passed: Vec<String> = source
            .split_once("run_cancel({")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(list, _)| {
                list.split(',')
                    .map(|k| k.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect()
            })
            .expect("cancel_one.lua calls run_cancel with a key table");
        assert!(source.contains("local due = KEYS[1]"));
        let expected: Vec<String> = SCRIPT_KEYS
            .iter()
            .map(
                |suffix| match CANCEL_KEYS.iter().position(|k| k == suffix) {
                    Some(0) => "due".to_string(),
                    Some(i) => format!("KEYS[{}]", i + 1),
                    None => format!("prefix .. '{suffix}'"),
                },
            )
            .collect();
        assert_eq!(passed, expected);
    }

    #[test]
    fn common_lua_lists_the_key_suffixes_in_keys_order() {
        let quoted: Vec<String> = crate::backend::redis::keys::SCRIPT_KEYS
            .iter()
            .map(|suffix| format!("'{suffix}'"))
            .collect();
        let lua: String = COMMON
            .split_once("local KEY_SUFFIXES = {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(list, _)| list.split_whitespace().collect())
            .expect("KEY_SUFFIXES in common.lua");
        assert_eq!(lua, quoted.join(","));
    }
}
