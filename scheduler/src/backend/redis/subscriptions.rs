//! Pub/sub: the subscriber connections that forward a namespace's wakes,
//! aborts, outcome announcements and job events as notices, and the choice
//! between plain and sharded pub/sub.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use tokio::sync::broadcast;

use super::keys::Keys;
use super::scripts::Publish;
use super::{builder, reply, RedisBackend, SCHEDULES_CHANGED};
use crate::api::error::Error;
use crate::api::events;
use crate::backend::outbox::{Outbox, NOTICE_CAPACITY};
use crate::backend::{EventNotice, FinishedNotice, Notice, Subscription};

/// How often a subscriber of shard channels reads the cluster's slot map
/// (one `CLUSTER SLOTS`) to follow a slot that moved.
const OWNERS_CHECK: Duration = Duration::from_secs(2);

/// Sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) on a Redis Cluster of 7.0 or
/// later, where a `PUBLISH` goes to every node: with it a notice costs the
/// shard that owns the namespace's slot, whatever the size of the cluster.
/// Plain pub/sub elsewhere (a standalone server gains nothing from it).
pub(super) fn publish_form(client: &Client) -> Publish {
    let version = client.server_version().map(|v| v.major);
    if client.is_clustered() && version.is_some_and(|major| major >= 7) {
        Publish::Sharded
    } else {
        Publish::Plain
    }
}

impl RedisBackend {
    /// Subscribes to `channels` (one group per namespace or shard, all of
    /// one hash tag) on a connection of its own and forwards what arrives,
    /// `capacity` notices at most (see [`Outbox`]): `read` turns a message
    /// into notices (none: skipped); when messages may have been lost (a
    /// reconnect, a lagging receiver, a full outbox, a shard channel whose
    /// slot moved), `missed()` is sent instead.
    ///
    /// With sharded pub/sub each group is one `SSUBSCRIBE` to the master that
    /// owns its slot (see [`ShardChannels`] for a slot that moves); the same
    /// names are also subscribed plainly, so that a process of an older
    /// version, which still `PUBLISH`es, is heard during a rolling deploy (a
    /// plain subscription costs nothing while nobody publishes plainly).
    async fn forward_channels<N: Send + 'static>(
        &self,
        channels: Vec<Vec<String>>,
        read: impl Fn(&Message) -> Vec<N> + Send + 'static,
        missed: fn() -> Vec<N>,
        capacity: usize,
    ) -> Result<Subscription<N>, Error> {
        let subscriber = builder(&self.url, &self.config)?
            .build_subscriber_client()
            .map_err(|e| Error::Config(e.details().to_string()))?;
        subscriber.init().await.map_err(|e| self.error(e))?;
        let mut shard_channels = match self.publish {
            Publish::Sharded => Some(
                ShardChannels::subscribe(subscriber.clone(), &channels)
                    .await
                    .map_err(|e| self.error(e))?,
            ),
            Publish::Plain => None,
        };
        subscriber
            .subscribe(channels.concat())
            .await
            .map_err(|e| self.error(e))?;
        let (mut outbox, rx) = Outbox::channel(capacity, missed);
        let manager = subscriber.manage_subscriptions();
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let mut owners_check = tokio::time::interval(OWNERS_CHECK);
        owners_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let forward = tokio::spawn(async move {
            loop {
                let open = tokio::select! {
                    reconnect = reconnects.recv() => match reconnect {
                        // While disconnected.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => outbox.push_missed(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    message = messages.recv() => match message {
                        Ok(m) => outbox.push(read(&m)),
                        Err(broadcast::error::RecvError::Lagged(_)) => outbox.push_missed(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    open = outbox.report_lost(), if outbox.lost() => open,
                    _ = owners_check.tick(), if shard_channels.is_some() => {
                        let moved = match shard_channels.as_mut() {
                            Some(shards) => shards.follow().await,
                            None => false,
                        };
                        if moved { outbox.push_missed() } else { true }
                    },
                };
                if !open {
                    return;
                }
            }
        });
        Ok(Subscription {
            notices: rx,
            close: closer(subscriber, manager, forward),
        })
    }

    /// A subscriber connection for the wake and abort channels, forwarded as notices.
    pub(super) async fn subscribe_notices(&self) -> Result<Subscription, Error> {
        self.subscribe_notices_of(&[&self.keys]).await
    }

    /// One subscriber connection for the wake and abort channels of these
    /// namespaces (the shards of a sharded one), forwarded as notices.
    pub(super) async fn subscribe_notices_of(&self, of: &[&Keys]) -> Result<Subscription, Error> {
        let abort_channels: Vec<String> = of.iter().map(|k| k.abort_channel.clone()).collect();
        let read = move |m: &Message| {
            let text = reply::string(&m.value);
            if abort_channels.iter().any(|c| *m.channel == **c) {
                return generation_and_id(&text)
                    .map(|(generation, id)| Notice::Abort { generation, id })
                    .into_iter()
                    .collect();
            }
            // On the wake channel: `schedules` (schedules.lua), or a due time.
            if text == SCHEDULES_CHANGED {
                vec![Notice::Schedules]
            } else {
                vec![Notice::Wake]
            }
        };
        // Notifications may have been missed: whatever they said, claim and plan.
        let missed = || vec![Notice::Wake, Notice::Schedules];
        let channels = of
            .iter()
            .map(|k| vec![k.wake_channel.clone(), k.abort_channel.clone()])
            .collect();
        self.forward_channels(channels, read, missed, NOTICE_CAPACITY)
            .await
    }

    /// A subscriber of this process's outcome channel (see listeners.lua):
    /// each message is `<generation>:<id>`; a reconnect may have lost some.
    pub(super) async fn subscribe_finished_channel(
        &self,
        token: &str,
    ) -> Result<Subscription<FinishedNotice>, Error> {
        self.subscribe_finished_of(&[&self.keys], token).await
    }

    /// The same for the outcome channels of these namespaces.
    pub(super) async fn subscribe_finished_of(
        &self,
        of: &[&Keys],
        token: &str,
    ) -> Result<Subscription<FinishedNotice>, Error> {
        let read = |m: &Message| {
            generation_and_id(&reply::string(&m.value))
                .map(|(generation, id)| FinishedNotice::Finished { generation, id })
                .into_iter()
                .collect()
        };
        let channels = of.iter().map(|k| vec![k.finished_channel(token)]).collect();
        self.forward_channels(
            channels,
            read,
            || vec![FinishedNotice::Missed],
            NOTICE_CAPACITY,
        )
        .await
    }

    /// A subscriber of the namespace's job events (see common.lua `emit`);
    /// a message that does not read as an event is skipped.
    pub(super) async fn subscribe_events_channel(
        &self,
        capacity: usize,
    ) -> Result<Subscription<EventNotice>, Error> {
        self.subscribe_events_of(&[&self.keys], capacity).await
    }

    /// The same for the events channels of these namespaces.
    pub(super) async fn subscribe_events_of(
        &self,
        of: &[&Keys],
        capacity: usize,
    ) -> Result<Subscription<EventNotice>, Error> {
        let read = |m: &Message| {
            let event = m.value.as_bytes().and_then(events::from_wire);
            if event.is_none() {
                tracing::debug!(channel = %m.channel, "skipped a message on the events channel that is not a job event");
            }
            event.map(EventNotice::Event).into_iter().collect()
        };
        let channels = of.iter().map(|k| vec![k.events_channel.clone()]).collect();
        self.forward_channels(channels, read, || vec![EventNotice::Missed], capacity)
            .await
    }
}

/// The shard channels of one subscriber, by group (one hash tag, so one
/// slot), with the master each group was subscribed on.
///
/// When a slot moves to another master (a resharding), Redis unsubscribes
/// the clients of its shard channels with an unsolicited `SUNSUBSCRIBE`,
/// which fred 10 drops: the subscriber would stay deaf to that shard until
/// its next reconnect. So every [`OWNERS_CHECK`] the subscriber reads the
/// slot map again, subscribes each group whose slot changed master on the
/// new one, and the caller reports that notices may have been missed.
struct ShardChannels {
    subscriber: SubscriberClient,
    groups: Vec<(u16, Vec<String>, Option<fred::types::config::Server>)>,
}

impl ShardChannels {
    /// One `SSUBSCRIBE` per group, on the master that owns its slot.
    async fn subscribe(
        subscriber: SubscriberClient,
        channels: &[Vec<String>],
    ) -> Result<Self, fred::error::Error> {
        for group in channels {
            subscriber.ssubscribe(group.clone()).await?;
        }
        let routing = subscriber.cached_cluster_state();
        let groups = channels
            .iter()
            .filter_map(|group| {
                let slot = fred::util::redis_keyslot(group.first()?.as_bytes());
                let owner = routing.as_ref().and_then(|r| r.get_server(slot).cloned());
                Some((slot, group.clone(), owner))
            })
            .collect();
        Ok(ShardChannels { subscriber, groups })
    }

    /// Reads the slot map and subscribes again each group whose master
    /// changed; true when one did (its notices since the move are lost).
    async fn follow(&mut self) -> bool {
        let subscriber = &self.subscriber;
        if let Err(e) = subscriber.sync_cluster().await {
            tracing::debug!(error = %e, "could not read the cluster's slot map");
            return false;
        }
        let Some(routing) = subscriber.cached_cluster_state() else {
            return false;
        };
        let mut moved = false;
        for (slot, group, owner) in &mut self.groups {
            let now = routing.get_server(*slot).cloned();
            if now.is_none() || now == *owner {
                continue;
            }
            match subscriber.ssubscribe(group.clone()).await {
                Ok(()) => {
                    tracing::info!(slot = *slot, master = ?now, "followed shard channels to the master that owns their slot now");
                    *owner = now;
                    moved = true;
                }
                Err(e) => {
                    tracing::warn!(slot = *slot, error = %e, "could not subscribe to shard channels on their new master; tried again shortly");
                }
            }
        }
        moved
    }
}

/// A message `<generation>:<id>` (an abort, an outcome announcement); a
/// generation that does not parse reads as 0.
fn generation_and_id(text: &str) -> Option<(u64, String)> {
    let (generation, id) = text.split_once(':')?;
    Some((generation.parse().unwrap_or(0), id.to_string()))
}

/// Releases a subscriber: stops forwarding, stops its resubscription
/// manager, and closes its connection.
fn closer(
    subscriber: fred::clients::SubscriberClient,
    manager: tokio::task::JoinHandle<()>,
    forward: tokio::task::JoinHandle<()>,
) -> crate::backend::CloseFn {
    Box::new(move || {
        Box::pin(async move {
            forward.abort();
            manager.abort();
            let _ = subscriber.quit().await;
        })
    })
}
