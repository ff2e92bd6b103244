//! Exposes the locked versions of the scheduler and its Redis client and runtime
//! to the driver's `info` output (read from the workspace's Cargo.lock, never typed by hand).
fn main() {
    // Read at run time: a build script compiled once can be run for another
    // checkout of the same workspace (a shared target directory), and a path
    // compiled in would point at the first one.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = format!("{manifest_dir}/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
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
