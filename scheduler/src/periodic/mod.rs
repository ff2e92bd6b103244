//! Periodic tasks.

pub(crate) mod store;
