//! The Lua scripts, one state transition each, loaded once and called with EVALSHA.

use fred::types::scripts::Script;

const COMMON: &str = include_str!("scripts/common.lua");

/// Every script, with `common.lua` prepended and the call's KEYS bound.
#[derive(Clone, Debug)]
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) claim: Script,
    pub(crate) complete: Script,
    pub(crate) renew: Script,
    pub(crate) cancel: Script,
    pub(crate) inspect: Script,
    pub(crate) dead_letters: Script,
    pub(crate) list: Script,
}

fn build(body: &str) -> Script {
    Script::from_lua(format!("{COMMON}\nbind(KEYS)\n{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            enqueue: build(include_str!("scripts/enqueue.lua")),
            claim: build(include_str!("scripts/claim.lua")),
            complete: build(include_str!("scripts/complete.lua")),
            renew: build(include_str!("scripts/renew.lua")),
            cancel: build(include_str!("scripts/cancel.lua")),
            inspect: build(include_str!("scripts/inspect.lua")),
            dead_letters: build(include_str!("scripts/dead_letters.lua")),
            list: build(include_str!("scripts/list.lua")),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 8] {
        [
            &self.enqueue,
            &self.claim,
            &self.complete,
            &self.renew,
            &self.cancel,
            &self.inspect,
            &self.dead_letters,
            &self.list,
        ]
    }
}
