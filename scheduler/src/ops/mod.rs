//! The operations side: the health a scheduler reports, its metrics and
//! per-minute activity counts, the
//! trace context carried with a job, and the audit that finds and repairs
//! stranded job records.

pub(crate) mod activity;
pub(crate) mod audit;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod trace;
