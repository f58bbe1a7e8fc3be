//! Pods and pod templates: `SetDefaults_Pod`, `SetDefaults_PodSpec`, the
//! container, probe and volume defaults, and what the Priority,
//! DefaultTolerationSeconds and ServiceAccount admission plugins add.

use serde_json::{Map, Value, json};

use super::{Admission, is_unset, mirror_first, object_at, object_entry, objects_in, set_default};
use crate::validation::VOLUME_SOURCES;
use crate::validation::quantity::Quantity;

/// Upstream's `DefaultTerminationGracePeriodSeconds`.
const TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// File mode 0644, the default of secret/configMap/downwardAPI/projected volumes.
const DEFAULT_MODE: i64 = 0o644;
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// A whole pod: the spec defaults plus what only pods (not templates) get.
pub(super) fn pod(obj: &mut Map<String, Value>, admission: &Admission) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    for key in ["containers", "initContainers"] {
        objects_in(spec, key).for_each(requests_from_limits);
    }
    set_default(spec, "enableServiceLinks", true);
    priority(spec);
    not_ready_tolerations(spec, admission);
    pod_spec(spec);
    // The ServiceAccount admission plugin.
    if is_unset(spec, "serviceAccountName") {
        spec.insert("serviceAccountName".into(), "default".into());
        spec.insert("serviceAccount".into(), "default".into());
    }
    let qos = qos_class(spec);
    if let Some(status) = object_entry(obj, "status") {
        set_default(status, "phase", "Pending");
        set_default(status, "qosClass", qos);
        mirror_first(status, "podIP", "podIPs", Some("ip"));
        mirror_first(status, "hostIP", "hostIPs", Some("ip"));
    }
}

/// A `PodSpec`, of a pod or of a template.
pub(super) fn pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", "ClusterFirst");
    set_default(spec, "restartPolicy", "Always");
    set_default(
        spec,
        "terminationGracePeriodSeconds",
        TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set_default(spec, "schedulerName", "default-scheduler");
    set_default(spec, "securityContext", Map::new());
    // v1 keeps the deprecated `serviceAccount` mirroring `serviceAccountName`.
    if is_unset(spec, "serviceAccountName")
        && let Some(name) = spec
            .get("serviceAccount")
            .filter(|v| v.is_string())
            .cloned()
    {
        spec.insert("serviceAccountName".into(), name);
    }
    if let Some(name) = spec
        .get("serviceAccountName")
        .filter(|v| v.is_string())
        .cloned()
    {
        spec.insert("serviceAccount".into(), name);
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for container in objects_in(spec, key) {
            self::container(container, host_network);
        }
    }
    for volume in objects_in(spec, "volumes") {
        self::volume(volume);
    }
}

fn container(container: &mut Map<String, Value>, host_network: bool) {
    let image = container.get("image").and_then(Value::as_str).unwrap_or("");
    let pull_policy = if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(container, "imagePullPolicy", pull_policy);
    set_default(container, "terminationMessagePath", "/dev/termination-log");
    set_default(container, "terminationMessagePolicy", "File");
    set_default(container, "resources", Map::new());
    for port in objects_in(container, "ports") {
        set_default(port, "protocol", "TCP");
        if host_network
            && is_unset(port, "hostPort")
            && let Some(container_port) = port.get("containerPort").cloned()
        {
            port.insert("hostPort".into(), container_port);
        }
    }
    for env in objects_in(container, "env") {
        if let Some(field_ref) = object_at(env, "valueFrom").and_then(|v| object_at(v, "fieldRef"))
        {
            set_default(field_ref, "apiVersion", "v1");
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = object_at(container, key) {
            self::probe(probe);
        }
    }
    if let Some(lifecycle) = object_at(container, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(handler) = object_at(lifecycle, key) {
                http_get(handler);
            }
        }
    }
}

/// The tag that decides the pull policy, as upstream's `ParseImageName`
/// sees it: `latest` when neither a tag nor a digest is given, `None` when
/// only a digest is.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_component = name.rsplit('/').next().unwrap_or(name);
    match last_component.split_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() || image.is_empty() => None,
        None => Some("latest"),
    }
}

fn probe(probe: &mut Map<String, Value>) {
    set_default(probe, "timeoutSeconds", 1);
    set_default(probe, "periodSeconds", 10);
    set_default(probe, "successThreshold", 1);
    set_default(probe, "failureThreshold", 3);
    http_get(probe);
}

/// `SetDefaults_HTTPGetAction` on the `httpGet` of a probe or hook.
fn http_get(handler: &mut Map<String, Value>) {
    if let Some(action) = object_at(handler, "httpGet") {
        if action
            .get("path")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            action.insert("path".into(), "/".into());
        }
        set_default(action, "scheme", "HTTP");
    }
}

/// A volume naming no source becomes an emptyDir.
fn volume(volume: &mut Map<String, Value>) {
    if VOLUME_SOURCES.iter().all(|key| is_unset(volume, key)) {
        volume.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = object_at(volume, key) {
            set_default(source, "defaultMode", DEFAULT_MODE);
        }
    }
    if let Some(host_path) = object_at(volume, "hostPath") {
        set_default(host_path, "type", "");
    }
    if let Some(iscsi) = object_at(volume, "iscsi") {
        set_default(iscsi, "iscsiInterface", "default");
    }
    if let Some(downward) = object_at(volume, "downwardAPI") {
        downward_api_items(downward);
    }
    if let Some(projected) = object_at(volume, "projected") {
        for source in objects_in(projected, "sources") {
            if let Some(token) = object_at(source, "serviceAccountToken") {
                set_default(token, "expirationSeconds", 3600);
            }
            if let Some(downward) = object_at(source, "downwardAPI") {
                downward_api_items(downward);
            }
        }
    }
}

fn downward_api_items(source: &mut Map<String, Value>) {
    for item in objects_in(source, "items") {
        if let Some(field_ref) = object_at(item, "fieldRef") {
            set_default(field_ref, "apiVersion", "v1");
        }
    }
}

/// `SetDefaults_Pod`: a resource with a limit and no request requests the limit.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = object_at(container, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    if let Some(requests) = object_entry(resources, "requests") {
        for (name, limit) in limits {
            requests.entry(name).or_insert(limit);
        }
    }
}

/// The Priority admission plugin: the built-in system classes, else 0.
fn priority(spec: &mut Map<String, Value>) {
    let class = spec.get("priorityClassName").and_then(Value::as_str);
    let priority = match class {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    set_default(spec, "priority", priority);
    set_default(spec, "preemptionPolicy", "PreemptLowerPriority");
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable
/// nodes for a while (300 s by default), unless the pod already tolerates
/// them.
fn not_ready_tolerations(spec: &mut Map<String, Value>, admission: &Admission) {
    if !matches!(
        spec.get("tolerations"),
        None | Some(Value::Null) | Some(Value::Array(_))
    ) {
        return;
    }
    let tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = Vec::new();
    for (taint, seconds) in [
        (NOT_READY_TAINT, admission.not_ready_toleration_seconds),
        (UNREACHABLE_TAINT, admission.unreachable_toleration_seconds),
    ] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
    if !added.is_empty() {
        let mut all = tolerations;
        all.extend(added);
        spec.insert("tolerations".into(), Value::Array(all));
    }
}

/// Upstream's `GetPodQOS`, over cpu and memory of all containers.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    const COMPUTE: [&str; 2] = ["cpu", "memory"];
    let mut requests: [Option<Quantity>; 2] = [None, None];
    let mut limits: [Option<Quantity>; 2] = [None, None];
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|key| spec.get(key).and_then(Value::as_array))
        .flatten();
    for container in containers {
        let resources = container.get("resources");
        let amount = |kind: &str, name: &str| {
            resources
                .and_then(|r| r.get(kind))
                .and_then(|m| m.get(name))
                .and_then(Quantity::from_json)
                .filter(Quantity::is_positive)
        };
        let mut limits_found = 0;
        for (i, name) in COMPUTE.iter().enumerate() {
            if let Some(q) = amount("requests", name) {
                requests[i] = Some(requests[i].unwrap_or_default() + q);
            }
            if let Some(q) = amount("limits", name) {
                limits_found += 1;
                limits[i] = Some(limits[i].unwrap_or_default() + q);
            }
        }
        if limits_found < COMPUTE.len() {
            guaranteed = false;
        }
    }
    if requests.iter().chain(&limits).all(Option::is_none) {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::defaults::{Admission, apply, apply_with};
    use crate::resources::lookup;

    fn defaulted_pod(pod: Value) -> Value {
        let mut pod = pod;
        apply(lookup("", "v1", "pods").unwrap(), &mut pod);
        pod
    }

    use serde_json::Value;

    /// What `kubectl run nginx --image=nginx` sends, and what upstream
    /// stores (minus the service account token volume and server metadata).
    #[test]
    fn kubectl_run_nginx_looks_like_upstream() {
        let pod = defaulted_pod(json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "nginx", "labels": {"run": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}],
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
            "status": {}
        }));
        assert_eq!(
            pod,
            json!({
                "kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": "nginx", "labels": {"run": "nginx"}},
                "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx", "resources": {},
                        "imagePullPolicy": "Always",
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    }],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                    "terminationGracePeriodSeconds": 30,
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "enableServiceLinks": true,
                    "serviceAccountName": "default",
                    "serviceAccount": "default",
                    "priority": 0,
                    "preemptionPolicy": "PreemptLowerPriority",
                    "tolerations": [
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300},
                    ],
                },
                "status": {"phase": "Pending", "qosClass": "BestEffort"},
            })
        );
    }

    #[test]
    fn defaulting_twice_changes_nothing() {
        let once = defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1"}]}}));
        assert_eq!(defaulted_pod(once.clone()), once);
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/library/nginx:1.2", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:latest@sha256:abcd", "Always"),
        ] {
            let pod =
                defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": image}]}}));
            assert_eq!(
                pod["spec"]["containers"][0]["imagePullPolicy"], policy,
                "{image}"
            );
        }
        let pod = defaulted_pod(json!({"spec": {"containers": [
            {"name": "a", "image": "nginx", "imagePullPolicy": "Never"}]}}));
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn ports_probes_env_and_volumes() {
        let pod = defaulted_pod(json!({"spec": {
            "containers": [{
                "name": "a", "image": "a:1",
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            }],
            "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
                {"name": "host", "hostPath": {"path": "/tmp"}},
                {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            ],
        }}));
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([
            {"containerPort": 80, "protocol": "TCP"},
            {"containerPort": 53, "protocol": "UDP"}])
        );
        assert_eq!(
            c["livenessProbe"],
            json!({
            "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        let v = &pod["spec"]["volumes"];
        assert_eq!(v[0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["secret"]["defaultMode"], 256);
        assert_eq!(v[3]["hostPath"]["type"], "");
        assert_eq!(v[4]["projected"]["defaultMode"], 420);
        assert_eq!(
            v[4]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
    }

    #[test]
    fn host_network_ports_get_host_ports() {
        let pod = defaulted_pod(json!({"spec": {"hostNetwork": true, "containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 8080}]}]}}));
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn toleration_seconds_follow_the_admission_settings() {
        let admission = Admission {
            not_ready_toleration_seconds: 7,
            unreachable_toleration_seconds: 5,
        };
        let mut pod = json!({"spec": {"containers": []}});
        apply_with(lookup("", "v1", "pods").unwrap(), &mut pod, &admission);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            ])
        );
    }

    #[test]
    fn existing_tolerations_are_kept_and_wildcards_count() {
        let pod = defaulted_pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}}));
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0]["tolerationSeconds"], 10);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");

        let pod = defaulted_pod(
            json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
        );
        assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn qos_class_and_requests_from_limits() {
        let guaranteed =
            defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1",
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}}));
        assert_eq!(
            guaranteed["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");

        let equal_but_spelled_differently =
            defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                          "requests": {"cpu": "1000m", "memory": "1024Mi"}}}]}}));
        assert_eq!(
            equal_but_spelled_differently["status"]["qosClass"],
            "Guaranteed"
        );

        let burstable = defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1",
            "resources": {"requests": {"cpu": "100m"}}}]}}));
        assert_eq!(burstable["status"]["qosClass"], "Burstable");

        let requests_below_limits =
            defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                          "requests": {"cpu": "500m", "memory": "1Gi"}}}]}}));
        assert_eq!(requests_below_limits["status"]["qosClass"], "Burstable");

        let best_effort =
            defaulted_pod(json!({"spec": {"containers": [{"name": "a", "image": "a:1",
            "resources": {}}]}}));
        assert_eq!(best_effort["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn service_account_mirrors_the_deprecated_field() {
        let pod = defaulted_pod(json!({"spec": {"containers": [], "serviceAccount": "builder"}}));
        assert_eq!(pod["spec"]["serviceAccountName"], "builder");
        assert_eq!(pod["spec"]["serviceAccount"], "builder");
    }

    #[test]
    fn system_priority_classes() {
        let pod = defaulted_pod(
            json!({"spec": {"containers": [], "priorityClassName": "system-node-critical"}}),
        );
        assert_eq!(pod["spec"]["priority"], 2_000_001_000);
    }
}
