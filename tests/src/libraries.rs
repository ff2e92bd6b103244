//! The Redis function libraries on a server, as `redis-cli` sees them: which
//! are loaded, fake ones of other versions, and the registry of those in use.

use crate::redis_server::cli_at;

/// The registry of the libraries in use (database 0, see the scheduler's
/// `backend/redis/keys.rs`).
pub const REGISTRY: &str = "scheduler:function-libraries";

/// The names of the libraries loaded on the server at `port`.
pub fn loaded(port: u16) -> Vec<String> {
    let list = cli_at(port, &["FUNCTION", "LIST"]).unwrap();
    let mut lines = list.lines();
    let mut names = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == "library_name" {
            names.push(lines.next().unwrap().trim().to_string());
        }
    }
    names.sort();
    names
}

/// Loads a library named `name` registering `<name>_claim`, as a version of
/// the scheduler with other scripts would have.
pub fn load_fake(port: u16, name: &str) {
    let code = format!(
        "#!lua name={name}\nredis.register_function('{name}_claim', function() return 1 end)"
    );
    let reply = cli_at(port, &["FUNCTION", "LOAD", &code]).unwrap();
    assert_eq!(reply.trim(), name, "FUNCTION LOAD answered {reply:?}");
}

/// The server's clock, in ms since the epoch.
pub fn server_time_ms(port: u16) -> i64 {
    let time = cli_at(port, &["TIME"]).unwrap();
    let mut parts = time.lines().map(|l| l.trim().parse::<i64>().unwrap());
    let (secs, micros) = (parts.next().unwrap(), parts.next().unwrap());
    secs * 1000 + micros / 1000
}

/// Writes the registry entry of `name`: last seen at `ms`.
pub fn record_seen(port: u16, name: &str, ms: i64) {
    cli_at(port, &["-n", "0", "HSET", REGISTRY, name, &ms.to_string()]).unwrap();
}

/// The registry entry of `name`: when it was last seen, if recorded.
pub fn seen(port: u16, name: &str) -> Option<i64> {
    let reply = cli_at(port, &["-n", "0", "HGET", REGISTRY, name]).unwrap();
    reply.trim().parse().ok()
}
