//! The sending half of a [`Subscription`](super::Subscription): bounded, so
//! that a reader that falls behind costs a bounded amount of memory. When
//! the reader is `capacity` notices behind, new notices are dropped, and the
//! subscription's "missed" notices are delivered in their place as soon as
//! there is room: the reader learns that it must look at the durable state
//! again, never silently loses a notice.

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// How many notices a worker's or a waiting process's subscription holds.
pub(crate) const NOTICE_CAPACITY: usize = 65_536;

/// Queues notices for one subscription (see the module's documentation).
pub(crate) struct Outbox<N> {
    tx: mpsc::Sender<N>,
    missed: fn() -> Vec<N>,
    lost: bool,
}

impl<N: Send + 'static> Outbox<N> {
    /// An outbox holding `capacity` notices, and its reader. `missed` says
    /// what a reader gets in place of notices that were lost.
    pub(crate) fn channel(capacity: usize, missed: fn() -> Vec<N>) -> (Self, mpsc::Receiver<N>) {
        let (tx, rx) = mpsc::channel(capacity.max(missed().len()).max(1));
        (
            Outbox {
                tx,
                missed,
                lost: false,
            },
            rx,
        )
    }

    /// Queues `notices`, dropping those that do not fit (a loss, reported
    /// later by [`report_lost`](Self::report_lost)). False when the reader
    /// is gone.
    pub(crate) fn push(&mut self, notices: Vec<N>) -> bool {
        for notice in notices {
            match self.tx.try_send(notice) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => self.lost = true,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    /// Queues the "missed" notices: messages were lost before they reached
    /// the outbox (a reconnect, a lagging broadcast).
    pub(crate) fn push_missed(&mut self) -> bool {
        let missed = (self.missed)();
        self.push(missed)
    }

    /// Whether notices were dropped and the loss is not reported yet.
    pub(crate) fn lost(&self) -> bool {
        self.lost
    }

    /// Waits for room, then queues the "missed" notices in place of those
    /// dropped. False when the reader is gone.
    pub(crate) async fn report_lost(&mut self) -> bool {
        let missed = (self.missed)();
        match self.tx.reserve_many(missed.len()).await {
            Ok(permits) => {
                for (permit, notice) in permits.zip(missed) {
                    permit.send(notice);
                }
                self.lost = false;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum N {
        Msg(u32),
        Missed,
    }

    #[tokio::test]
    async fn a_full_outbox_drops_and_then_reports_the_loss() {
        let (mut outbox, mut rx) = Outbox::channel(2, || vec![N::Missed]);
        assert!(outbox.push(vec![N::Msg(1), N::Msg(2), N::Msg(3)]));
        assert!(outbox.lost());
        assert_eq!(rx.recv().await, Some(N::Msg(1)));
        assert!(outbox.report_lost().await);
        assert!(!outbox.lost());
        assert_eq!(rx.recv().await, Some(N::Msg(2)));
        assert_eq!(rx.recv().await, Some(N::Missed));
    }

    #[tokio::test]
    async fn a_gone_reader_ends_the_outbox() {
        let (mut outbox, rx) = Outbox::channel(2, || vec![N::Missed]);
        drop(rx);
        assert!(!outbox.push(vec![N::Msg(1)]));
        assert!(!outbox.report_lost().await);
    }
}
