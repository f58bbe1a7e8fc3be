//! The registry against a real SQLite store: graceful deletion, finalizers,
//! propagation, optimistic concurrency, allocation.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::resources::lookup;
use crate::storage::SqliteStore;

async fn registry(dir: &std::path::Path) -> Registry {
    let store = SqliteStore::open(&dir.join("state.db"), fields::indexer).unwrap();
    let registry = Registry::new(
        Arc::new(store),
        IpAllocator::new("10.96.0.0/24".parse().unwrap()),
        PortAllocator::new(30000..=30010),
    );
    registry
        .bootstrap(&Bootstrap {
            advertise_address: "127.0.0.1".parse().unwrap(),
            port: 6443,
        })
        .await
        .unwrap();
    registry
}

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

fn res(plural: &str) -> &'static crate::resources::Resource {
    lookup("", "v1", plural).unwrap()
}

#[tokio::test]
async fn bound_pods_terminate_gracefully_until_the_final_delete() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    let opts = WriteOptions::default();
    r.create(
        res("pods"),
        Some("default"),
        pod("bound", Some("n1")),
        &opts,
    )
    .await
    .unwrap();
    r.create(res("pods"), Some("default"), pod("free", None), &opts)
        .await
        .unwrap();

    let free = r
        .delete(
            res("pods"),
            Some("default"),
            "free",
            DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert!(free.finished, "an unscheduled pod goes at once");

    let first = r
        .delete(
            res("pods"),
            Some("default"),
            "bound",
            DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert!(!first.finished);
    let terminating = r
        .get(res("pods"), Some("default"), "bound")
        .unwrap()
        .parse();
    assert!(meta::is_deleting(&terminating));
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);

    let last = DeleteOptions {
        grace_period: Some(0),
        ..Default::default()
    };
    assert!(
        r.delete(res("pods"), Some("default"), "bound", last)
            .await
            .unwrap()
            .finished
    );
    assert_eq!(
        r.get(res("pods"), Some("default"), "bound")
            .unwrap_err()
            .code,
        404
    );
}

#[tokio::test]
async fn foreground_deletion_waits_for_its_finalizer() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    let opts = WriteOptions::default();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    r.create(res("configmaps"), Some("default"), cm, &opts)
        .await
        .unwrap();
    let foreground = DeleteOptions {
        propagation: Some(Propagation::Foreground),
        ..Default::default()
    };
    let deleted = r
        .delete(res("configmaps"), Some("default"), "c", foreground)
        .await
        .unwrap();
    assert!(!deleted.finished);
    let kept = r
        .get(res("configmaps"), Some("default"), "c")
        .unwrap()
        .parse();
    assert_eq!(meta::finalizers(&kept), ["foregroundDeletion"]);

    let clear = json!({"metadata": {"finalizers": null}});
    r.patch(
        res("configmaps"),
        Some("default"),
        "c",
        PatchKind::Merge,
        &clear,
        &opts,
        Target::Main,
    )
    .await
    .unwrap();
    assert_eq!(
        r.get(res("configmaps"), Some("default"), "c")
            .unwrap_err()
            .code,
        404
    );
}

#[tokio::test]
async fn stale_resource_versions_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    let opts = WriteOptions::default();
    let created = r
        .create(res("pods"), Some("default"), pod("p", None), &opts)
        .await
        .unwrap();
    let mut stale = created.object.parse();
    let labeled = json!({"metadata": {"labels": {"a": "b"}}});
    r.patch(
        res("pods"),
        Some("default"),
        "p",
        PatchKind::Merge,
        &labeled,
        &opts,
        Target::Main,
    )
    .await
    .unwrap();
    stale["metadata"]["labels"] = json!({"c": "d"});
    let err = r
        .update(
            res("pods"),
            Some("default"),
            "p",
            stale,
            &opts,
            Target::Main,
        )
        .await
        .err()
        .unwrap();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
}

#[tokio::test]
async fn node_ports_are_not_handed_out_twice_also_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriteOptions::default();
    let svc = |name: &str, node_port: Option<u16>| {
        let mut port = json!({"port": 80});
        if let Some(p) = node_port {
            port["nodePort"] = json!(p);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": "NodePort", "ports": [port], "selector": {"a": "b"}}})
    };
    let taken = {
        let r = registry(dir.path()).await;
        let made = r
            .create(
                res("services"),
                Some("default"),
                svc("a", Some(30005)),
                &opts,
            )
            .await
            .unwrap();
        made.object.parse()["spec"]["clusterIP"].clone()
    };
    let r = registry(dir.path()).await;
    let err = r
        .create(
            res("services"),
            Some("default"),
            svc("b", Some(30005)),
            &opts,
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, 422, "{err}");
    for i in 0..10 {
        let made = r
            .create(
                res("services"),
                Some("default"),
                svc(&format!("s{i}"), None),
                &opts,
            )
            .await
            .unwrap();
        let parsed = made.object.parse();
        assert_ne!(parsed["spec"]["ports"][0]["nodePort"], 30005);
        assert_ne!(parsed["spec"]["clusterIP"], taken);
    }
    let full = r
        .create(res("services"), Some("default"), svc("full", None), &opts)
        .await
        .err()
        .unwrap();
    assert_eq!(
        full.code, 422,
        "the 11 ports of the range are taken: {full}"
    );
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    let opts = WriteOptions::default();
    let created = r
        .create(res("pods"), Some("default"), pod("p", None), &opts)
        .await
        .unwrap();
    let uid = meta::uid(&created.object.parse()).to_string();
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                         "metadata": {"name": "p", "uid": uid}, "target": {"kind": "Node", "name": "n1"}});
    r.bind(res("pods"), "default", "p", &binding, &opts)
        .await
        .unwrap();
    let bound = r.get(res("pods"), Some("default"), "p").unwrap().parse();
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let scheduled = bound["status"]["conditions"].as_array().unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
    );
    let again = r
        .bind(res("pods"), "default", "p", &binding, &opts)
        .await
        .err()
        .unwrap();
    assert_eq!(again.code, 409, "{again}");
}
