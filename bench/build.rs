//! Exposes the locked versions of the scheduler and its Redis client and runtime
//! to the driver's `info` output (read from the workspace's Cargo.lock, never typed by hand).
fn main() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(lock_path).unwrap_or_default();
    for (name, var) in [
        ("scheduler", "V_SCHEDULER"),
        ("fred", "V_FRED"),
        ("tokio", "V_TOKIO"),
    ] {
        let needle = format!("name = \"{name}\"\nversion = \"");
        let version = lock
            .find(&needle)
            .map(|i| {
                let rest = &lock[i + needle.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_else(|| "?".into());
        println!("cargo:rustc-env={var}={version}");
    }
}
