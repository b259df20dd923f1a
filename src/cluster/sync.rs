//! Keeping every replica's memory in step: writes and purges raise a generation in Redis and
//! are announced on one pub/sub channel, as are forgotten tokens; each replica follows the
//! channel and applies what it hears to its own cache and proofs.
//!
//! A replica that lost its subscription re-reads the change counter when it subscribes again:
//! if any change went by unheard (or Redis lost its data), it hears [`Event::Resync`] and
//! drops every page it holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Script;

use super::error::ClusterError;
use super::keys::Keys;
use super::link::{Link, PROBE_INTERVAL};

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sync.lua")));

/// Something every replica must apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Drop the pages of this iModel (any subject; ids compared ignoring ASCII case).
    PurgeIModel(String),
    /// Drop every page.
    PurgeAll,
    /// Forget the proof of the token with this keyed hash (lower-case hex).
    Forget(String),
    /// Changes went by unheard: drop every page.
    Resync,
}

impl Event {
    /// The channel message; changes carry their count (`kind:count:detail`).
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::PurgeIModel(id) => format!("i:0:{id}"),
            Self::PurgeAll | Self::Resync => "a:0:".to_owned(),
            Self::Forget(hash) => format!("f:0:{hash}"),
        }
    }

    /// A channel message, and the change count it carries (0 for none).
    fn decode(message: &str) -> Option<(Self, u64)> {
        let mut parts = message.splitn(3, ':');
        let kind = parts.next()?;
        let count = parts.next()?.parse().ok()?;
        let detail = parts.next()?;
        let event = match kind {
            "i" => Self::PurgeIModel(detail.to_owned()),
            "a" => Self::PurgeAll,
            "f" => Self::Forget(detail.to_owned()),
            _ => return None,
        };
        Some((event, count))
    }
}

/// What a replica does with what it hears.
pub(crate) type Handler = Arc<dyn Fn(Event) + Send + Sync>;

/// Announces writes and purges, and follows the announcements of others.
#[derive(Debug, Clone)]
pub struct Invalidations {
    link: Link,
    keys: Keys,
    /// How long an iModel generation outlives its last change: longer than any page lives.
    generation_keep: Duration,
    synced: Arc<AtomicBool>,
}

impl Invalidations {
    /// Announcements through `link` under `keys`; generations are kept `generation_keep`.
    pub fn new(link: Link, keys: Keys, generation_keep: Duration) -> Self {
        Self {
            link,
            keys,
            generation_keep,
            synced: Arc::default(),
        }
    }

    /// Whether this replica follows the channel now (it hears every change).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Raises the generation of `imodel_id`'s pages (or of all pages, for `None`) and
    /// announces it to every replica (this one included).
    pub async fn announce_purge(&self, imodel_id: Option<&str>) -> Result<(), ClusterError> {
        let (generation, kind, keep) = match imodel_id {
            Some(id) => (
                self.keys.imodel_generation(id),
                "i",
                u64::try_from(self.generation_keep.as_millis()).unwrap_or(u64::MAX),
            ),
            None => (self.keys.all_generation(), "a", 0),
        };
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(generation)
            .key(self.keys.changes())
            .arg(self.keys.channel())
            .arg(kind)
            .arg(imodel_id.unwrap_or(""))
            .arg(keep);
        self.link
            .call(|mut conn| async move { invocation.invoke_async::<u64>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// Follows the channel for as long as the link lives, feeding `handler`; resubscribes
    /// after every loss, with a [`Event::Resync`] when changes went by unheard.
    pub fn follow(&self, handler: Handler) {
        tokio::spawn(follow(self.clone(), handler));
    }

    async fn changes(&self) -> Result<Option<u64>, ClusterError> {
        let key = self.keys.changes();
        self.link
            .call(|mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await
    }
}

/// The follower's loop: subscribe, re-read the change counter, apply messages until the
/// subscription breaks, and again.
async fn follow(sync: Invalidations, handler: Handler) {
    let mut state = sync.link.watch();
    // The change count last heard; `None` before the first subscription, whose Resync drops
    // whatever was cached while alone.
    let mut heard: Option<Option<u64>> = None;
    loop {
        if state.wait_for(|up| *up).await.is_err() {
            return;
        }
        let subscribed = tokio::time::timeout(sync.link.connect_timeout(), async {
            let mut pubsub = sync.link.client().get_async_pubsub().await?;
            pubsub.subscribe(sync.keys.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let Ok(Ok(pubsub)) = subscribed else {
            tokio::time::sleep(PROBE_INTERVAL).await;
            continue;
        };
        let Ok(count) = sync.changes().await else {
            tokio::time::sleep(PROBE_INTERVAL).await;
            continue;
        };
        if heard != Some(count) {
            handler(Event::Resync);
        }
        heard = Some(count);
        sync.synced.store(true, Ordering::SeqCst);
        tracing::debug!("following the cluster's invalidations");
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            let Some((event, count)) = Event::decode(&text) else {
                continue;
            };
            if count > 0 {
                // Messages sent between subscribing and reading the counter are already in it.
                heard = heard.max(Some(Some(count)));
            }
            handler(event);
        }
        sync.synced.store(false, Ordering::SeqCst);
        tracing::debug!("lost the cluster's invalidations; resubscribing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode() {
        assert_eq!(
            Event::decode("i:7:im:with:colons"),
            Some((Event::PurgeIModel("im:with:colons".into()), 7))
        );
        assert_eq!(Event::decode("a:8:"), Some((Event::PurgeAll, 8)));
        let forget = Event::Forget("ab12".into());
        assert_eq!(Event::decode(&forget.encode()), Some((forget, 0)));
        assert_eq!(Event::decode("x:1:"), None);
        assert_eq!(Event::decode("i:one:m"), None);
    }
}
