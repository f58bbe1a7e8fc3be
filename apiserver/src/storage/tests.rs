use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::*;

fn labels_of(_key: &str, obj: &Value) -> Attrs {
    let labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Attrs {
        labels,
        fields: Vec::new(),
    }
}

fn pod(name: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}})
}

fn create(key: &str, value: Value) -> Write {
    Write {
        key: key.into(),
        op: Op::Create(value),
    }
}

fn rv(obj: &Object) -> String {
    obj.parse()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn writes_get_increasing_revisions_stamped_into_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    let a = store
        .write(create("/pods/default/a", pod("a")))
        .await
        .unwrap();
    let b = store
        .write(create("/pods/default/b", pod("b")))
        .await
        .unwrap();
    assert!(b.revision > a.revision);
    assert_eq!(rv(&b), b.revision.to_string());
    assert_eq!(store.revision(), b.revision);
    assert_eq!(a.attrs.label("app"), Some("a"));
}

#[tokio::test]
async fn preconditions_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    let a = store
        .write(create("/pods/default/a", pod("a")))
        .await
        .unwrap();
    let again = store.write(create("/pods/default/a", pod("a"))).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    let update = |expect| Write {
        key: "/pods/default/a".into(),
        op: Op::Update {
            value: pod("a"),
            expect,
        },
    };
    let updated = store.write(update(a.revision)).await.unwrap();
    let stale = store.write(update(a.revision)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { current, .. }) if current == updated.revision),
        "{stale:?}"
    );
    let missing = store
        .write(Write {
            key: "/pods/default/zz".into(),
            op: Op::Delete {
                value: pod("zz"),
                expect: 1,
            },
        })
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn lists_a_prefix_in_key_order_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    for key in [
        "/pods/ns2/x",
        "/pods/ns1/b",
        "/pods/ns1/a",
        "/services/ns1/a",
    ] {
        store.write(create(key, pod("p"))).await.unwrap();
    }
    let keys = |s: Snapshot| {
        s.items
            .iter()
            .map(|o| o.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.list("/pods/ns1/", None)),
        ["/pods/ns1/a", "/pods/ns1/b"]
    );
    assert_eq!(
        keys(store.list("/pods/", Some("/pods/ns1/b"))),
        ["/pods/ns2/x"]
    );
}

#[tokio::test]
async fn state_and_revisions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (deleted_at, kept) = {
        let store = SqliteStore::open(&path, labels_of).unwrap();
        let a = store
            .write(create("/pods/default/a", pod("a")))
            .await
            .unwrap();
        let kept = store
            .write(create("/pods/default/b", pod("b")))
            .await
            .unwrap();
        let gone = store
            .write(Write {
                key: "/pods/default/a".into(),
                op: Op::Delete {
                    value: pod("a"),
                    expect: a.revision,
                },
            })
            .await
            .unwrap();
        (gone.revision, kept)
    };
    let store = SqliteStore::open(&path, labels_of).unwrap();
    assert!(store.get("/pods/default/a").is_none());
    let b = store.get("/pods/default/b").unwrap();
    assert_eq!(b.value, kept.value);
    assert_eq!(store.revision(), deleted_at);
    let next = store
        .write(create("/pods/default/c", pod("c")))
        .await
        .unwrap();
    assert_eq!(next.revision, deleted_at + 1);
}

#[tokio::test]
async fn concurrent_writes_are_all_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap());
    let writes = (0..300).map(|i| store.write(create(&format!("/pods/default/p{i:03}"), pod("p"))));
    let results = futures::future::join_all(writes).await;
    let mut revisions: Vec<_> = results.into_iter().map(|r| r.unwrap().revision).collect();
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 300);
    assert_eq!(store.list("/pods/", None).items.len(), 300);
}

async fn next_event(stream: &mut EventStream) -> Arc<Event> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5s")
        .expect("the stream is open")
        .expect("no error")
}

#[tokio::test]
async fn watch_replays_then_follows_live_events_under_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    let start = store.revision();
    let a = store
        .write(create("/pods/default/a", pod("a")))
        .await
        .unwrap();
    store
        .write(create("/services/default/a", pod("a")))
        .await
        .unwrap();
    let mut watch = store.watch("/pods/", start).unwrap();
    let added = next_event(&mut watch).await;
    assert_eq!(
        (added.kind, added.revision()),
        (EventType::Added, a.revision)
    );
    let updated = store
        .write(Write {
            key: "/pods/default/a".into(),
            op: Op::Update {
                value: pod("a"),
                expect: a.revision,
            },
        })
        .await
        .unwrap();
    let modified = next_event(&mut watch).await;
    assert_eq!(modified.kind, EventType::Modified);
    assert_eq!(modified.revision(), updated.revision);
    assert_eq!(modified.prev.as_ref().unwrap().revision, a.revision);
}

#[tokio::test]
async fn watch_behind_the_ring_replays_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open_with_ring(&dir.path().join("state.db"), labels_of, 4).unwrap());
    let start = store.revision();
    for i in 0..10 {
        store
            .write(create(&format!("/pods/default/p{i}"), pod("p")))
            .await
            .unwrap();
    }
    let mut watch = store.watch("/pods/default/", start).unwrap();
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(next_event(&mut watch).await.revision());
    }
    assert_eq!(seen, ((start + 1)..=(start + 10)).collect::<Vec<_>>());
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    let a = store
        .write(create("/pods/default/a", pod("a")))
        .await
        .unwrap();
    let b = store
        .write(Write {
            key: "/pods/default/a".into(),
            op: Op::Update {
                value: pod("a"),
                expect: a.revision,
            },
        })
        .await
        .unwrap();
    // Rows are stamped with whole seconds: wait until they are in the past.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let compacted = store.compact(Duration::ZERO).await.unwrap();
    assert_eq!(compacted, b.revision);
    let refused = store.watch("/pods/", a.revision);
    assert!(matches!(refused, Err(StoreError::Compacted { .. })));
    assert!(store.watch("/pods/", b.revision).is_ok());
    // The newest row of a live key is kept.
    drop(store);
    let store = SqliteStore::open(&dir.path().join("state.db"), labels_of).unwrap();
    assert_eq!(store.get("/pods/default/a").unwrap().revision, b.revision);
    assert_eq!(store.compacted(), b.revision);
}
