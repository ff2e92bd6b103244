//! The public API an application calls: the scheduler handle, tasks and their
//! typed job requests, job ids and outcomes, errors, configuration, where
//! Redis is, and the dependencies tasks receive.

pub(crate) mod activity;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod deps;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod job;
pub(crate) mod listing;
pub(crate) mod registry;
pub(crate) mod routing;
pub(crate) mod scheduler;
pub(crate) mod task;
pub(crate) mod task_result;
