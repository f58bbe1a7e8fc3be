//! What a ReplicaSet's last reconcile did that the pod cache may not show
//! yet: pods it created (counted as present until the cache has them) and
//! pods it deleted (counted as gone until the cache drops them). Without
//! this a reconcile that runs before the cache catches up would create or
//! delete the same pods twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// After this long an expectation is dropped even if the cache never
/// confirmed it (the pod was deleted before the cache saw it, …).
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Pending {
    /// Names of pods created.
    creates: HashMap<String, Instant>,
    /// Uids of pods deleted.
    deletes: HashMap<String, Instant>,
}

#[derive(Default)]
pub struct Expectations {
    by_owner: Mutex<HashMap<String, Pending>>,
}

/// An owner's outstanding expectations, after checking them against the cache.
pub struct Outstanding {
    /// Created pods the cache does not show yet.
    pub creates: usize,
    /// Deleted pods the cache still shows (by uid).
    pub deletes: Vec<String>,
}

impl Expectations {
    pub fn created(&self, owner: &str, pod: &str) {
        let mut map = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        let pending = map.entry(owner.to_string()).or_default();
        pending.creates.insert(pod.to_string(), Instant::now());
    }

    pub fn deleted(&self, owner: &str, pod_uid: &str) {
        let mut map = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        let pending = map.entry(owner.to_string()).or_default();
        pending.deletes.insert(pod_uid.to_string(), Instant::now());
    }

    /// Drops what `cached` (the owner's pods in the cache) confirms and what
    /// timed out; returns the rest.
    pub fn outstanding<'a>(
        &self,
        owner: &str,
        cached: impl IntoIterator<Item = &'a Pod> + Clone,
    ) -> Outstanding {
        let mut map = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pending) = map.get_mut(owner) else {
            return Outstanding {
                creates: 0,
                deletes: Vec::new(),
            };
        };
        let has_name = |name: &str| {
            cached
                .clone()
                .into_iter()
                .any(|p| p.metadata.name.as_deref() == Some(name))
        };
        let still_active = |uid: &str| {
            cached.clone().into_iter().any(|p| {
                p.metadata.uid.as_deref() == Some(uid) && p.metadata.deletion_timestamp.is_none()
            })
        };
        pending
            .creates
            .retain(|name, at| at.elapsed() < TIMEOUT && !has_name(name));
        pending
            .deletes
            .retain(|uid, at| at.elapsed() < TIMEOUT && still_active(uid));
        let outstanding = Outstanding {
            creates: pending.creates.len(),
            deletes: pending.deletes.keys().cloned().collect(),
        };
        if pending.creates.is_empty() && pending.deletes.is_empty() {
            map.remove(owner);
        }
        outstanding
    }

    /// Forgets an owner (deleted).
    pub fn forget(&self, owner: &str) {
        let mut map = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn creates_count_until_cached() {
        let e = Expectations::default();
        e.created("rs", "web-a");
        e.created("rs", "web-b");
        let cached = [pod("web-a", "1")];
        assert_eq!(e.outstanding("rs", &cached).creates, 1);
        let cached = [pod("web-a", "1"), pod("web-b", "2")];
        assert_eq!(e.outstanding("rs", &cached).creates, 0);
        assert_eq!(e.outstanding("other", &cached).creates, 0);
    }

    #[test]
    fn deletes_count_until_gone_from_the_cache() {
        let e = Expectations::default();
        e.deleted("rs", "1");
        let cached = [pod("web-a", "1")];
        assert_eq!(e.outstanding("rs", &cached).deletes, ["1"]);
        assert!(e.outstanding("rs", &[]).deletes.is_empty());
        // Confirmed once: not expected again even if it reappeared.
        assert!(e.outstanding("rs", &cached).deletes.is_empty());
    }
}
