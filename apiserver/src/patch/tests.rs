//! Patches as kubectl sends them (`kubectl -v=8` prints the bodies), applied
//! to objects as the apiserver stores them.

use serde_json::{Value, json};

use super::*;
use crate::resources::{Resource, lookup};

fn deployments() -> &'static Resource {
    lookup("apps", "v1", "deployments").unwrap()
}

fn pods() -> &'static Resource {
    lookup("", "v1", "pods").unwrap()
}

/// A stored deployment (defaults filled, a server-side annotation).
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.24", "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "inf"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "x", "operator": "Exists"}],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]},
    })
}

fn smp(res: &Resource, live: &Value, patch: Value) -> Value {
    strategic_merge(res, live, &patch).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kubectl_set_image_changes_one_container() {
    let live = live_deployment();
    let patched = smp(
        deployments(),
        &live,
        json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx:1.25", "name": "nginx"}]}}}}),
    );
    let mut want = live.clone();
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    assert_eq!(patched, want);
}

#[test]
fn kubectl_apply_changed_image_with_element_order() {
    let live = live_deployment();
    let patched = smp(
        deployments(),
        &live,
        json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.25", "name": "nginx"}],
            }}},
        }),
    );
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.25");
    assert_eq!(
        containers[0]["ports"],
        live["spec"]["template"]["spec"]["containers"][0]["ports"]
    );
    assert_eq!(containers[1]["name"], "sidecar");
    let annotations = &patched["metadata"]["annotations"];
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        annotations["kubectl.kubernetes.io/last-applied-configuration"],
        "{}\n"
    );
}

#[test]
fn deleting_a_port_and_an_env_var_by_merge_key() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/ports": [{"containerPort": 80}],
                "$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
                "name": "nginx",
                "ports": [{"$patch": "delete", "containerPort": 8080}],
                "env": [{"$patch": "delete", "name": "A"}, {"name": "C", "value": "3"}],
            }],
        }}}}),
    );
    let nginx = &patched["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        nginx["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(
        nginx["env"],
        json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn element_order_keeps_server_only_items_in_place() {
    // The live list has a container the patch does not know ("injected");
    // the patch reorders its own two. As upstream merges the two sorted
    // runs, "injected" stays ahead of "b", which followed it in the live list.
    let mut live = live_deployment();
    live["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "a"}, {"name": "injected", "image": "i"}, {"name": "b", "image": "b"}]);
    let patched = smp(
        deployments(),
        &live,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "c"}],
        }}}}),
    );
    let names: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["injected", "b", "a", "c"]);
}

#[test]
fn switching_to_recreate_drops_rolling_update_via_retain_keys() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
    );
    assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn changing_a_volume_source_with_retain_keys() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"spec": {"template": {"spec": {"volumes": [
            {"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "emptyDir": null, "name": "data"}]}}}}),
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
    let mismatch = strategic_merge(
        deployments(),
        &live_deployment(),
        &json!({"spec": {"template": {"spec": {"volumes": [
            {"$retainKeys": ["name"], "configMap": {"name": "cfg"}, "name": "data"}]}}}}),
    );
    assert_eq!(mismatch.unwrap_err().code(), 422);
}

#[test]
fn nulls_delete_and_primitive_lists_merge_as_sets() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"metadata": {
            "labels": {"app": null, "tier": "front"},
            "finalizers": ["b", "c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
        }}),
    );
    assert_eq!(patched["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(patched["metadata"]["finalizers"], json!(["b", "c"]));
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "y", "operator": "Exists"}],
            "containers": [{"name": "sidecar", "args": ["sleep", "1"]}],
        }}}}),
    );
    let spec = &patched["spec"]["template"]["spec"];
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "y", "operator": "Exists"}])
    );
    assert_eq!(spec["containers"][1]["args"], json!(["sleep", "1"]));
    assert_eq!(spec["containers"][1]["image"], "busybox");
}

#[test]
fn replace_directives() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "only:1"}]}}}}),
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "only:1"}])
    );
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}),
    );
    assert_eq!(patched["metadata"]["labels"], json!({"new": "1"}));
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"metadata": {"annotations": {"$patch": "delete"}}}),
    );
    assert_eq!(patched["metadata"]["annotations"], json!({}));
}

#[test]
fn status_conditions_merge_by_type() {
    let patched = smp(
        deployments(),
        &live_deployment(),
        json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
                          "readyReplicas": 2}}),
    );
    let conditions = &patched["status"]["conditions"];
    assert_eq!(
        conditions[0],
        json!({"type": "Available", "status": "True"})
    );
    assert_eq!(conditions[1]["reason"], "ProgressDeadlineExceeded");
    assert_eq!(patched["status"]["readyReplicas"], 2);
}

#[test]
fn service_ports_merge_by_port() {
    let services = lookup("", "v1", "services").unwrap();
    let live = json!({"spec": {"type": "NodePort", "ports": [
        {"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31000}]}});
    let patched = smp(
        services,
        &live,
        json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
    );
    assert_eq!(
        patched["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 31000}, {"port": 443}])
    );
}

#[test]
fn bad_patches_are_rejected_with_upstream_codes() {
    let live = live_deployment();
    let cases = [
        (json!([1]), 400),
        (json!({"metadata": {"$patch": "explode"}}), 400),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            422,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            422,
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "a"}]}}}}),
            400,
        ),
        (json!({"spec": {"strategy": {"$retainKeys": "type"}}}), 400),
        (
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
            400,
        ),
    ];
    for (patch, code) in cases {
        let err = strategic_merge(deployments(), &live, &patch).unwrap_err();
        assert_eq!(err.code(), code, "{patch}: {err}");
    }
}

#[test]
fn new_fields_lose_their_nulls_and_directives() {
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "a"}]}});
    let patched = smp(
        pods(),
        &pod,
        json!({"spec": {
            "containers": [{"name": "b", "image": "b", "env": [{"name": "X", "value": null}],
                            "$setElementOrder/env": [{"name": "X"}]}],
            "nodeSelector": {"disk": "ssd", "gone": null},
        }}),
    );
    assert_eq!(
        patched["spec"]["containers"][1],
        json!({"name": "b", "image": "b", "env": [{"name": "X"}]})
    );
    assert_eq!(patched["spec"]["nodeSelector"], json!({"disk": "ssd"}));
}

#[test]
fn json_merge_patch() {
    let scale = json!({"spec": {"replicas": 1}, "status": {"replicas": 1}});
    assert_eq!(
        json_merge(&scale, &json!({"spec": {"replicas": 3}})),
        json!({"spec": {"replicas": 3}, "status": {"replicas": 1}})
    );
}

#[test]
fn rfc6902_json_patch() {
    let live = live_deployment();
    let patched = json_patch(
        &live,
        &json!([
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
        ]),
    )
    .unwrap();
    assert_eq!(patched["spec"]["replicas"], 5);
    assert_eq!(patched["metadata"]["labels"]["tier"], "web");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let failed_test = json_patch(
        &live,
        &json!([{"op": "test", "path": "/spec/replicas", "value": 9}]),
    );
    assert_eq!(failed_test.unwrap_err().code(), 422);
    let missing = json_patch(&live, &json!([{"op": "remove", "path": "/spec/nope"}]));
    assert_eq!(missing.unwrap_err().code(), 422);
    let malformed = json_patch(&live, &json!({"op": "replace"}));
    assert_eq!(malformed.unwrap_err().code(), 400);
}

#[test]
fn apply_removes_what_the_manager_dropped_and_keeps_the_rest() {
    let last = json!({
        "metadata": {"name": "web", "labels": {"app": "web", "old": "x"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.24", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}},
    });
    let mut live = live_deployment();
    live["metadata"]["labels"]["old"] = json!("x");
    let config = json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "B", "value": "2"}]}]}}},
    });
    let applied = apply(deployments(), Some(&live), Some(&last), &config).unwrap();
    assert_eq!(
        applied["metadata"]["labels"],
        json!({"app": "web"}),
        "label dropped from config is removed"
    );
    assert!(
        applied["spec"].get("replicas").is_none(),
        "replicas was applied before and is no longer"
    );
    assert_eq!(
        applied["spec"]["selector"], live["spec"]["selector"],
        "never applied by this manager: kept"
    );
    let containers = applied["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        2,
        "the sidecar another manager added stays"
    );
    assert_eq!(containers[0]["image"], "nginx:1.25");
    assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
    assert_eq!(
        containers[0]["imagePullPolicy"], "IfNotPresent",
        "defaults stay"
    );
    assert_eq!(applied["status"], live["status"]);
}

#[test]
fn apply_on_create_is_the_configuration() {
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    assert_eq!(apply(pods(), None, None, &config).unwrap(), config);
    assert_eq!(
        apply(pods(), None, None, &json!("x")).unwrap_err().code(),
        400
    );
}

/// The patch kubectl 1.32 (and 1.20, byte for byte) sent for `kubectl apply`
/// of a changed deployment, computed from our `/openapi/v3` patch metadata:
/// image changed, env var A and port 8080 removed, env C added, strategy
/// switched to Recreate, the volume switched from emptyDir to a configMap,
/// label `old` and finalizer `example.com/a` dropped.
#[test]
fn the_patch_kubectl_apply_sends() {
    let live: Value =
        serde_json::from_str(include_str!("testdata/kubectl-apply-deployment.live.json")).unwrap();
    let patch: Value =
        serde_json::from_str(include_str!("testdata/kubectl-apply-deployment.patch.json")).unwrap();
    let patched = smp(deployments(), &live, patch.clone());

    let meta = &patched["metadata"];
    assert_eq!(meta["labels"], json!({"app": "web"}));
    assert_eq!(meta["finalizers"], json!(["example.com/b"]));
    assert_eq!(
        meta["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        patch["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    );
    let spec = &patched["spec"];
    assert_eq!(spec["strategy"], json!({"type": "Recreate"}));
    assert_eq!(spec["revisionHistoryLimit"], 10);
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
    assert_eq!(pod["restartPolicy"], "Always");
    let nginx = &pod["containers"][0];
    assert_eq!(nginx["image"], "nginx:1.25");
    assert_eq!(
        nginx["env"],
        json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(
        nginx["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(nginx["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["containers"][1]["name"], "sidecar");
    assert_eq!(patched["status"], live["status"]);
    let text = serde_json::to_string(&patched).unwrap();
    assert!(
        !text.contains("$setElementOrder")
            && !text.contains("$patch")
            && !text.contains("$retainKeys")
    );
}

/// `kubectl set env deployment/web D=4 B-` (kubectl 1.32), as sent.
#[test]
fn the_patch_kubectl_set_env_sends() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "A"}, {"name": "D"}],
             "env": [{"name": "D", "value": "4"}, {"$patch": "delete", "name": "B"}], "name": "nginx"},
            {"env": [{"name": "D", "value": "4"}], "name": "sidecar"},
        ],
    }}}});
    let patched = smp(deployments(), &live_deployment(), patch);
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "D", "value": "4"}])
    );
    assert_eq!(containers[1]["env"], json!([{"name": "D", "value": "4"}]));
    assert_eq!(containers[1]["args"], json!(["sleep", "inf"]));
}

/// A client-side applied object, first applied server-side: what the
/// annotation recorded counts as applied before (KEP-3517).
#[test]
fn server_side_apply_after_client_side_apply() {
    let live: Value =
        serde_json::from_str(include_str!("testdata/kubectl-apply-deployment.live.json")).unwrap();
    let last = last_applied_annotation(&live).expect("the annotation parses");
    assert_eq!(
        last["spec"]["template"]["spec"]["volumes"][0]["emptyDir"],
        json!({})
    );
    let mut config = last.clone();
    config["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "data", "configMap": {"name": "cfg"}}]);
    let applied = apply(deployments(), Some(&live), Some(&last), &config).unwrap();
    assert_eq!(
        applied["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
    assert_eq!(
        last_applied_annotation(
            &json!({"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: "nope"}}})
        ),
        None
    );
}
