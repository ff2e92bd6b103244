//! What a worker claims: the queues it serves (and in what order each claim
//! visits them), the tasks it can run, and their concurrency limits.

use crate::api::registry::{Registry, TaskRegistration};
use crate::api::routing::{weighted_order, Queues};
use crate::backend::{Serving, TaskLimits};
use crate::DEFAULT_QUEUE;

/// A worker's [`Serving`], with the queue order drawn anew for each claim.
#[derive(Debug)]
pub(crate) struct ServingPlan {
    base: Serving,
    /// `Some`: weights to draw each claim's queue order with.
    weights: Option<Vec<(String, u32)>>,
}

impl ServingPlan {
    pub(crate) fn new(queues: &Queues, registry: &Registry) -> Self {
        let (names, weights) = match queues {
            Queues::OfItsTasks => {
                let mut names: Vec<String> = registry
                    .tasks()
                    .map(|t| t.options.queue_name().to_string())
                    .collect();
                names.sort();
                names.dedup();
                if names.is_empty() {
                    names.push(DEFAULT_QUEUE.to_string());
                }
                let weights = names.iter().map(|n| (n.clone(), 1)).collect();
                (names, Some(weights))
            }
            Queues::Strict(names) => (names.clone(), None),
            Queues::Weighted(weighted) => (
                weighted.iter().map(|(n, _)| n.clone()).collect(),
                Some(weighted.clone()),
            ),
        };
        // The tasks of the queues it serves: a job of another of its tasks
        // found in one of them (a deploy that moved the task) waits for a
        // worker that serves the task's queue, as the worker may lack that
        // task's dependencies.
        let served: Vec<&TaskRegistration> = registry
            .tasks()
            .filter(|t| names.iter().any(|q| q == t.options.queue_name()))
            .collect();
        let limits = served
            .iter()
            .filter_map(|t| TaskLimits::of(t.name, &t.options))
            .collect();
        ServingPlan {
            base: Serving {
                tasks: Some(served.iter().map(|t| t.name.to_string()).collect()),
                queues: Some(names),
                limits,
            },
            weights: weights.filter(|w: &Vec<(String, u32)>| w.len() > 1),
        }
    }

    /// The queues served (in the configured order).
    pub(crate) fn queues(&self) -> &[String] {
        self.base.queues.as_deref().unwrap_or_default()
    }

    /// What the next claim asks for.
    pub(crate) fn next_claim(&self) -> Serving {
        let mut serving = self.base.clone();
        if let Some(weights) = &self.weights {
            serving.queues = Some(
                weighted_order(weights, |n| fastrand::u64(..n))
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            );
        }
        serving
    }
}
