//! The in-memory side of the store: the current object of every key (reads
//! never touch disk) and a ring of recent events that watches follow.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::{Event, EventType, Object, Revision, Snapshot};

/// How many recent events the ring keeps by default; watches further behind
/// replay from the log on disk.
pub(super) const RING_CAPACITY: usize = 8192;

pub(super) struct Cache {
    state: RwLock<State>,
    ring_capacity: usize,
    /// The revision of the last applied write; watchers wait on it.
    latest: watch::Sender<Revision>,
}

struct State {
    index: BTreeMap<Arc<str>, Arc<Object>>,
    ring: VecDeque<Arc<Event>>,
    /// Every event after this revision is in `ring`.
    floor: Revision,
    revision: Revision,
    compacted: Revision,
}

/// A watcher's cursor fell below the ring: replay from disk first.
pub(super) struct Behind {
    pub floor: Revision,
}

impl Cache {
    pub fn new(
        objects: impl IntoIterator<Item = Arc<Object>>,
        revision: Revision,
        compacted: Revision,
        ring_capacity: usize,
    ) -> Cache {
        let index = objects.into_iter().map(|o| (o.key.clone(), o)).collect();
        Cache {
            state: RwLock::new(State {
                index,
                ring: VecDeque::new(),
                floor: revision,
                revision,
                compacted,
            }),
            latest: watch::channel(revision).0,
            ring_capacity,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated
        // (`apply` only pushes complete entries), so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    pub fn compacted(&self) -> Revision {
        self.read().compacted
    }

    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        self.read().index.get(key).cloned()
    }

    pub fn list(&self, prefix: &str, start_after: Option<&str>) -> Snapshot {
        let state = self.read();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let items = state
            .index
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect();
        Snapshot {
            items,
            revision: state.revision,
        }
    }

    /// Publishes committed events (in revision order) to readers and watchers.
    pub fn apply(&self, events: Vec<Arc<Event>>) {
        let Some(last) = events.last().map(|e| e.revision()) else {
            return;
        };
        {
            let mut state = self.write();
            for event in events {
                let key = event.object.key.clone();
                match event.kind {
                    EventType::Deleted => {
                        state.index.remove(&key);
                    }
                    EventType::Added | EventType::Modified => {
                        state.index.insert(key, event.object.clone());
                    }
                }
                if state.ring.len() == self.ring_capacity
                    && let Some(dropped) = state.ring.pop_front()
                {
                    state.floor = dropped.revision();
                }
                state.ring.push_back(event);
            }
            state.revision = last;
        }
        self.latest.send_replace(last);
    }

    /// Records that the log before `revision` was compacted.
    pub fn set_compacted(&self, revision: Revision) {
        let mut state = self.write();
        state.compacted = state.compacted.max(revision);
    }

    /// Up to `max` events under `prefix` after `cursor`, from the ring, and
    /// the revision the scan got through (the next cursor).
    pub fn events_after(
        &self,
        prefix: &str,
        cursor: Revision,
        max: usize,
    ) -> Result<(Vec<Arc<Event>>, Revision), Behind> {
        let state = self.read();
        if cursor < state.floor {
            return Err(Behind { floor: state.floor });
        }
        let start = state.ring.partition_point(|e| e.revision() <= cursor);
        let mut events = Vec::new();
        for event in state.ring.range(start..) {
            if events.len() == max {
                let through = events.last().map_or(cursor, |e: &Arc<Event>| e.revision());
                return Ok((events, through));
            }
            if event.object.key.starts_with(prefix) {
                events.push(event.clone());
            }
        }
        Ok((events, state.revision.max(cursor)))
    }

    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.latest.subscribe()
    }
}
