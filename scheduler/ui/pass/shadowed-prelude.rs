//! A module that shadows the prelude and the runtime's names still compiles.
//! (Not `str` or `u8`: serde's own derive does not survive those.)
#![allow(dead_code, non_camel_case_types)]

use scheduler::task;

type Result<T> = std::result::Result<T, std::string::String>;
struct Box;
struct Vec;
struct String;
enum Option {}
struct Scheduler;
struct Send;
struct Future;
struct Duration;
struct Task;
struct JobRequest;
struct Error;
trait Clone {}
mod core {}
mod serde {}
mod inventory {}

#[task]
async fn shadowed(count: u64, names: std::vec::Vec<std::string::String>) -> Result<u64> {
    let _ = names;
    Ok(count)
}

#[task(name = "shadowed.unit", max_attempts = 2, timeout = "5m")]
async fn shadowed_unit(flag: bool) {
    let _ = flag;
}

fn main() {
    let _ = shadowed::job(1, std::vec::Vec::new());
}
