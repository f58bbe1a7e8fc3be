//! A watch: the events under a prefix after a revision, first those the ring
//! no longer holds (read back from the log), then the ring's, then live
//! events as writers publish them. Writers never wait for watchers.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::watch;

use super::cache::{Behind, Cache};
use super::sqlite::LogReader;
use super::{Event, EventStream, Revision, StoreError};

/// Events taken from the ring or the log at a time.
const CHUNK: usize = 512;

pub(super) struct Watcher {
    cache: Arc<Cache>,
    log: LogReader,
    prefix: String,
    /// The revision of the last event handed out (or skipped as unrelated).
    cursor: Revision,
    pending: VecDeque<Arc<Event>>,
    latest: watch::Receiver<Revision>,
    failed: bool,
}

impl Watcher {
    pub fn new(cache: Arc<Cache>, log: LogReader, prefix: String, from: Revision) -> Watcher {
        let latest = cache.subscribe();
        Watcher {
            cache,
            log,
            prefix,
            cursor: from,
            pending: VecDeque::new(),
            latest,
            failed: false,
        }
    }

    pub fn into_stream(self) -> EventStream {
        futures::stream::unfold(self, |mut watcher| async move {
            let next = watcher.next().await?;
            Some((next, watcher))
        })
        .boxed()
    }

    async fn next(&mut self) -> Option<Result<Arc<Event>, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.failed {
                return None;
            }
            // Mark the current revision seen before reading, so a write
            // published after the read wakes the wait below.
            self.latest.borrow_and_update();
            match self.cache.events_after(&self.prefix, self.cursor, CHUNK) {
                Ok((events, through)) => {
                    self.cursor = through;
                    if events.is_empty() {
                        self.latest.changed().await.ok()?;
                    }
                    self.pending.extend(events);
                }
                Err(Behind { floor }) => {
                    if let Err(e) = self.replay(floor).await {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Reads events the ring has dropped (up to `floor`) back from the log.
    async fn replay(&mut self, floor: Revision) -> Result<(), StoreError> {
        let compacted = self.cache.compacted();
        if self.cursor < compacted {
            return Err(StoreError::Compacted {
                requested: self.cursor,
                compacted,
            });
        }
        let (log, prefix, after) = (self.log.clone(), self.prefix.clone(), self.cursor);
        let events = tokio::task::spawn_blocking(move || log.read(&prefix, after, floor, CHUNK))
            .await
            .map_err(|e| anyhow::anyhow!("reading the log: {e}"))??;
        self.cursor = match events.last() {
            Some(last) if events.len() == CHUNK => last.revision(),
            _ => floor,
        };
        self.pending.extend(events);
        Ok(())
    }
}
