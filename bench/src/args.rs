//! The protocol's command line: `[--redis-url URL] <subcommand> [--flag value | --switch]...`.
//!
//! Hand-written rather than clap: the protocol requires unknown flags to be
//! ignored (clap rejects them unless every subcommand opts into
//! `ignore_errors`, which also swallows real mistakes silently and still needs
//! each flag declared), flags come in any order, and a flag is a switch exactly
//! when no value follows it. Twenty lines do exactly that.

use std::collections::HashMap;

/// A parsed command line.
pub(crate) struct Args {
    pub(crate) url: String,
    pub(crate) cmd: String,
    flags: HashMap<String, String>,
}

impl Args {
    pub(crate) fn parse(argv: impl IntoIterator<Item = String>) -> Args {
        let mut url = "redis://127.0.0.1:6391/0".to_string();
        let mut cmd = String::new();
        let mut flags = HashMap::new();
        let mut argv = argv.into_iter().peekable();
        while let Some(arg) = argv.next() {
            let Some(name) = arg.strip_prefix("--") else {
                if cmd.is_empty() {
                    cmd = arg;
                }
                continue;
            };
            let value = match argv.peek() {
                Some(next) if !next.starts_with("--") => argv.next().unwrap_or_default(),
                _ => "true".to_string(),
            };
            if name == "redis-url" {
                url = value;
            } else {
                flags.insert(name.to_string(), value);
            }
        }
        Args { url, cmd, flags }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// A number flag, or `default` when it is absent, unreadable or 0.
    pub(crate) fn num_or(&self, name: &str, default: f64) -> f64 {
        let n = self.num(name);
        if n == 0.0 {
            default
        } else {
            n
        }
    }

    /// A number flag (floats accepted); 0 when absent or unreadable.
    pub(crate) fn num(&self, name: &str) -> f64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(line: &str) -> Args {
        Args::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn protocol_lines() {
        let a = parse(
            "--redis-url redis://h:1/0 enqueue --n 20000.0 --mode bulk --bogus --id-prefix p-",
        );
        assert_eq!(a.url, "redis://h:1/0");
        assert_eq!(a.cmd, "enqueue");
        assert_eq!(a.num("n"), 20000.0);
        assert_eq!(a.get("mode"), Some("bulk"));
        assert_eq!(a.get("bogus"), Some("true"));
        assert_eq!(a.get("id-prefix"), Some("p-"));
        let w = parse("--redis-url u worker --enable-cancel --concurrency default");
        assert_eq!(w.get("enable-cancel"), Some("true"));
        assert_eq!(w.get("concurrency"), Some("default"));
        assert_eq!(w.num("expect"), 0.0);
    }
}
