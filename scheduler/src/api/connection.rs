//! Where Redis is: a standalone server, a Sentinel-managed master or a
//! Cluster, built in code instead of written as a URL.

use std::fmt;

/// A Redis deployment to connect to; turns into the URL
/// [`Scheduler::builder`](crate::Scheduler::builder) takes.
///
/// ```
/// use scheduler::RedisConnection;
///
/// let sentinel = RedisConnection::sentinel("mymaster", [("10.0.0.1", 26379), ("10.0.0.2", 26379)])
///     .credentials("app", "p@ss:word");
/// assert_eq!(
///     sentinel.to_url(),
///     "redis-sentinel://app:p%40ss%3Aword@10.0.0.1:26379/0?sentinelServiceName=mymaster&node=10.0.0.2:26379"
/// );
/// let cluster = RedisConnection::cluster([("r1", 7000), ("r2", 7000), ("r3", 7000)]).tls();
/// assert_eq!(cluster.to_url(), "rediss-cluster://r1:7000?node=r2:7000&node=r3:7000");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConnection {
    topology: Topology,
    username: Option<String>,
    password: Option<String>,
    tls: bool,
    database: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Topology {
    Standalone(String, u16),
    Sentinel(String, Vec<(String, u16)>),
    Cluster(Vec<(String, u16)>),
}

fn nodes<H: Into<String>>(list: impl IntoIterator<Item = (H, u16)>) -> Vec<(String, u16)> {
    list.into_iter().map(|(h, p)| (h.into(), p)).collect()
}

impl RedisConnection {
    /// One server.
    pub fn standalone(host: impl Into<String>, port: u16) -> Self {
        Self::with(Topology::Standalone(host.into(), port))
    }

    /// The master that these sentinels name for `service`; clients follow
    /// failovers.
    pub fn sentinel<H: Into<String>>(
        service: impl Into<String>,
        sentinels: impl IntoIterator<Item = (H, u16)>,
    ) -> Self {
        Self::with(Topology::Sentinel(service.into(), nodes(sentinels)))
    }

    /// A Redis Cluster, found from these seed nodes.
    pub fn cluster<H: Into<String>>(seeds: impl IntoIterator<Item = (H, u16)>) -> Self {
        Self::with(Topology::Cluster(nodes(seeds)))
    }

    fn with(topology: Topology) -> Self {
        RedisConnection {
            topology,
            username: None,
            password: None,
            tls: false,
            database: 0,
        }
    }

    /// Authenticates as `username` (ACL) with `password`.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Authenticates with a password only (`requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Uses TLS.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Selects a database (standalone and Sentinel only).
    pub fn database(mut self, db: u8) -> Self {
        self.database = db;
        self
    }

    /// The URL (with the password in it: do not log it; `Debug` hides it).
    pub fn to_url(&self) -> String {
        let s = if self.tls { "s" } else { "" };
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
            (None, Some(p)) => format!(":{}@", encode(p)),
            (Some(u), None) => format!("{}@", encode(u)),
            (None, None) => String::new(),
        };
        let list = |nodes: &[(String, u16)]| {
            nodes
                .iter()
                .map(|(h, p)| format!("node={h}:{p}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        match &self.topology {
            Topology::Standalone(host, port) => {
                format!("redis{s}://{auth}{host}:{port}/{}", self.database)
            }
            Topology::Sentinel(service, sentinels) => {
                let (first, rest) = sentinels
                    .split_first()
                    .map_or((None, &[][..]), |(f, r)| (Some(f), r));
                let (host, port) = first
                    .cloned()
                    .unwrap_or_else(|| ("127.0.0.1".into(), 26379));
                let mut url = format!(
                    "redis{s}-sentinel://{auth}{host}:{port}/{}?sentinelServiceName={}",
                    self.database,
                    encode(service)
                );
                if !rest.is_empty() {
                    url.push('&');
                    url.push_str(&list(rest));
                }
                url
            }
            Topology::Cluster(seeds) => {
                let (first, rest) = seeds
                    .split_first()
                    .map_or((None, &[][..]), |(f, r)| (Some(f), r));
                let (host, port) = first.cloned().unwrap_or_else(|| ("127.0.0.1".into(), 6379));
                let mut url = format!("redis{s}-cluster://{auth}{host}:{port}");
                if !rest.is_empty() {
                    url.push('?');
                    url.push_str(&list(rest));
                }
                url
            }
        }
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("topology", &self.topology)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("database", &self.database)
            .finish()
    }
}

impl From<RedisConnection> for String {
    fn from(connection: RedisConnection) -> String {
        connection.to_url()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            RedisConnection::standalone("localhost", 6379).to_url(),
            "redis://localhost:6379/0"
        );
        assert_eq!(
            RedisConnection::standalone("h", 1)
                .password("a b")
                .database(2)
                .tls()
                .to_url(),
            "rediss://:a%20b@h:1/2"
        );
        let debug = format!(
            "{:?}",
            RedisConnection::standalone("h", 1).password("secret")
        );
        assert!(!debug.contains("secret"));
    }
}
