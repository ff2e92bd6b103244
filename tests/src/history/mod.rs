//! The fault-history checker (issue 14, "the checker that finds the next
//! ones"): producers and workers append every acknowledgement, run start and
//! run end to a history while faults are injected; [`checker`] then asserts
//! the scheduler's guarantees over the whole history.
//!
//! One job per module: [`event`] is the history model, [`recorder`] appends
//! to it (in memory, or a JSON-lines file per worker process), [`task`] is the
//! recorded task, [`rng`] and [`plan`] turn a seed into operations and a
//! fault schedule, [`producer`] carries out operations, [`workers`] owns the
//! worker processes, [`faults`] injects the schedule, [`run`] puts one seed
//! together, [`checker`] judges, [`report`] counts and prints.
//!
//! Clock: every timestamp in a history is the host's wall clock
//! (`chrono::Utc::now()`, microseconds since the epoch), read in whichever
//! process the event happened. All processes, redis-server included, run on
//! one host, so this is also the clock Redis `TIME` reads: run times and
//! `finished_at` that Redis reports (milliseconds) compare directly.

pub mod checker;
pub mod event;
pub mod faults;
pub mod plan;
pub mod producer;
pub mod recorder;
pub mod report;
pub mod rng;
pub mod run;
pub mod task;
pub mod workers;
