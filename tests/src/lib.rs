//! Test support: private `redis-server` processes on free ports, unique
//! namespaces, and a probe that records exactly what ran.
#![allow(missing_docs, clippy::unwrap_used)]

pub mod child;
pub mod cluster;
pub mod history;
pub mod libraries;
pub mod otel;
pub mod probe;
pub mod proxy;
pub mod redis_server;
pub mod sentinel;
pub mod setup;
pub mod tasks;
pub mod worker_process;

pub use probe::{Execution, Probe};
pub use redis_server::RedisServer;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A namespace no other test uses.
pub fn namespace(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F: FnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where a conformance test runs: a private `redis-server`, or a private
/// in-memory store.
pub enum Fixture {
    Redis(RedisServer),
    Memory(String),
    /// A private `redis-server` holding namespaces split over
    /// [`Fixture::SHARDS`] shards.
    Sharded(RedisServer),
}

impl Fixture {
    /// The shards of a [`Fixture::Sharded`] namespace.
    pub const SHARDS: u16 = 3;

    pub fn redis() -> Self {
        Fixture::Redis(RedisServer::start())
    }

    pub fn sharded() -> Self {
        Fixture::Sharded(RedisServer::start())
    }

    /// A scheduler builder of this fixture: its URL, and its shards.
    pub fn builder(&self) -> scheduler::SchedulerBuilder {
        let builder = scheduler::Scheduler::builder(self.url());
        match self {
            Fixture::Sharded(_) => builder.shards(Self::SHARDS),
            _ => builder,
        }
    }

    pub fn memory() -> Self {
        Fixture::Memory(namespace("mem"))
    }

    /// The URL schedulers of this test connect to.
    pub fn url(&self) -> String {
        match self {
            Fixture::Redis(server) | Fixture::Sharded(server) => server.url(),
            Fixture::Memory(name) => format!("memory://{name}"),
        }
    }
}

/// Instantiates each listed `async fn(Fixture)` on a sharded namespace
/// (next to [`conformance!`], for the behaviours sharding must keep).
#[macro_export]
macro_rules! sharded_conformance {
    ($($name:ident),* $(,)?) => {
        mod sharded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Fixture::sharded()).await
                }
            )*
        }
    };
}

/// Instantiates each listed `async fn(Fixture)` once per backend.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Fixture::redis()).await
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Fixture::memory()).await
                }
            )*
        }
    };
}
