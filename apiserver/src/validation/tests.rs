//! Invalid objects as users write them, and the errors upstream reports.

use serde_json::{Value, json};

use super::*;
use crate::defaults;
use crate::resources::{Resource, lookup};

fn res(group: &str, plural: &str) -> &'static Resource {
    lookup(group, "v1", plural).unwrap()
}

/// Defaults `obj` as the server does, validates, and returns `field: message` lines.
fn errors(res: &Resource, obj: Value) -> Vec<String> {
    let mut obj = obj;
    defaults::apply(res, &mut obj);
    validate(res, &obj, None)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn nginx() -> Value {
    json!({"name": "nginx", "image": "nginx"})
}

#[test]
fn valid_objects_have_no_errors() {
    assert_eq!(
        errors(res("", "pods"), pod(json!({"containers": [nginx()]}))),
        Vec::<String>::new()
    );
    let deploy = deployment(json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [nginx()]}},
    }));
    assert_eq!(
        errors(res("apps", "deployments"), deploy),
        Vec::<String>::new()
    );
    let svc = json!({"metadata": {"name": "web", "namespace": "default"},
                     "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080}]}});
    assert_eq!(errors(res("", "services"), svc), Vec::<String>::new());
}

#[test]
fn bad_names_per_kind() {
    let mut bad = pod(json!({"containers": [nginx()]}));
    bad["metadata"]["name"] = json!("Bad_Name");
    assert_eq!(
        errors(res("", "pods"), bad),
        [
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    let svc = json!({"metadata": {"name": "1web", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}});
    assert!(
        errors(res("", "services"), svc)[0]
            .starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label")
    );
    let ns = json!({"metadata": {"name": "a.b"}});
    assert!(
        errors(res("", "namespaces"), ns)[0]
            .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label")
    );
    let nameless = json!({"metadata": {"namespace": "default"}, "data": {}});
    assert_eq!(
        errors(res("", "configmaps"), nameless),
        ["metadata.name: Required value: name or generateName is required"]
    );
    let namespaced_node = json!({"metadata": {"name": "n", "namespace": "default"}});
    assert_eq!(
        errors(res("", "nodes"), namespaced_node),
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
}

#[test]
fn labels_and_annotations() {
    let mut p = pod(json!({"containers": [nginx()]}));
    p["metadata"]["labels"] = json!({"app": "has space", "-bad": "x"});
    p["metadata"]["annotations"] = json!({"big": "x".repeat(300 * 1024)});
    let errs = errors(res("", "pods"), p);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs.iter().any(|e| {
        e.starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist of")
    }));
    assert!(errs.iter().any(|e| e.starts_with(
        "metadata.labels: Invalid value: \"has space\": a valid label must be an empty string"
    )));
    assert!(
        errs.contains(&"metadata.annotations: Too long: must have at most 262144 bytes".to_owned())
    );
}

#[test]
fn pod_spec_errors() {
    assert_eq!(
        errors(res("", "pods"), pod(json!({}))),
        ["spec.containers: Required value"]
    );
    let errs = errors(
        res("", "pods"),
        pod(json!({
            "restartPolicy": "Sometimes",
            "containers": [
                {"name": "web", "image": "", "ports": [{"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}]},
                {"name": "web", "image": "nginx", "imagePullPolicy": "Sometimes",
                 "env": [{"name": "A=B", "value": "1"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "Side_Car", "image": "busybox"},
            ],
        })),
    );
    let want = [
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[1].name: Duplicate value: \"web\"",
        "spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        "spec.containers[1].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        "spec.containers[1].volumeMounts[0].name: Not found: \"data\"",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
    ];
    for line in want {
        assert!(
            errs.iter().any(|e| e == line),
            "missing {line}\nin {errs:#?}"
        );
    }
    assert!(errs.iter().any(|e| e.starts_with(
        "spec.containers[2].name: Invalid value: \"Side_Car\": a lowercase RFC 1123 label"
    )));
    assert_eq!(errs.len(), want.len() + 1, "{errs:#?}");
}

#[test]
fn resources_volumes_probes_tolerations() {
    let errs = errors(
        res("", "pods"),
        pod(json!({
            "containers": [{
                "name": "a", "image": "a",
                "resources": {"requests": {"cpu": "2", "memory": "-1", "gpu": "1"}, "limits": {"cpu": "1", "memory": "lots"}},
                "livenessProbe": {"successThreshold": 2, "httpGet": {"port": 0}},
                "readinessProbe": {},
            }],
            "volumes": [{"name": "d", "emptyDir": {}, "hostPath": {"path": "/x"}}, {"name": "d", "configMap": {}}],
            "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}, {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
        })),
    );
    let want = [
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        "spec.volumes[1].name: Duplicate value: \"d\"",
        "spec.volumes[1].configMap.name: Required value",
        "spec.containers[0].resources.limits[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
        "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
        "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        "spec.containers[0].readinessProbe: Required value: must specify a handler type",
        "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        "spec.tolerations[1].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
    ];
    for line in want {
        assert!(
            errs.iter().any(|e| e == line),
            "missing {line}\nin {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn pod_updates_may_only_change_images_and_a_few_fields() {
    let pods = res("", "pods");
    let mut old = pod(json!({"containers": [nginx()]}));
    defaults::apply(pods, &mut old);
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    new["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "x", "operator": "Exists"}));
    new["metadata"]["labels"] = json!({"a": "b"});
    assert!(validate(pods, &new, Some(&old)).is_empty());

    new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
    new["metadata"]["name"] = json!("other");
    let errs: Vec<String> = validate(pods, &new, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        errs[0],
        "metadata.name: Invalid value: \"other\": field is immutable"
    );
    assert!(errs[1].starts_with(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
    ));
}

#[test]
fn deployment_errors() {
    let deployments = res("apps", "deployments");
    let errs = errors(
        deployments,
        deployment(json!({
            "replicas": -1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"restartPolicy": "Never", "containers": [nginx()]}},
        })),
    );
    assert_eq!(
        errs,
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
        ]
    );
    assert_eq!(
        errors(
            deployments,
            deployment(json!({"template": {"spec": {"containers": [nginx()]}}}))
        ),
        ["spec.selector: Required value"]
    );

    let mut old = deployment(json!({"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [nginx()]}}}));
    defaults::apply(deployments, &mut old);
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
    new["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
    let errs: Vec<String> = validate(deployments, &new, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"
        ]
    );
}

#[test]
fn service_errors() {
    let services = res("", "services");
    let svc =
        |spec: Value| json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    assert_eq!(
        errors(services, svc(json!({}))),
        ["spec.ports: Required value"]
    );
    let errs = errors(
        services,
        svc(
            json!({"type": "Magic", "ports": [{"port": 0}, {"port": 80, "name": "http", "nodePort": 30080}]}),
        ),
    );
    assert_eq!(
        errs,
        [
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            "spec.ports[0].name: Required value",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            // Defaulted from the port, and so just as wrong (upstream too).
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        ]
    );
    let errs = errors(
        services,
        svc(json!({"ports": [{"port": 80, "nodePort": 30080}], "clusterIP": "10.96.0.300"})),
    );
    assert_eq!(
        errs,
        [
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            "spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]
    );
    let mut old = svc(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.10"}));
    defaults::apply(services, &mut old);
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.11");
    new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
    let errs: Vec<String> = validate(services, &new, Some(&old))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": may not change once set"]
    );
}

#[test]
fn config_maps_secrets_and_small_kinds() {
    let cm = json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a/b": "x", "k": "1"}, "binaryData": {"k": "MQ=="}});
    let errs = errors(res("", "configmaps"), cm);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0]
            .starts_with("data[a/b]: Invalid value: \"a/b\": a valid config key must consist of")
    );
    assert_eq!(
        errs[1],
        "binaryData[k]: Invalid value: \"k\": duplicate of key present in data"
    );

    let tls = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
    assert_eq!(
        errors(res("", "secrets"), tls),
        ["data[tls.key]: Required value"]
    );

    let lease = json!({"metadata": {"name": "l", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0}});
    assert_eq!(
        errors(
            lookup("coordination.k8s.io", "v1", "leases").unwrap(),
            lease
        ),
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let slice = json!({"metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4",
                       "endpoints": [{"addresses": ["fd00::1"]}], "ports": [{"port": 80}]});
    assert_eq!(
        errors(
            lookup("discovery.k8s.io", "v1", "endpointslices").unwrap(),
            slice
        ),
        ["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"]
    );
}

#[test]
fn events_old_and_new() {
    let events = res("", "events");
    let event = |ns: &str, involved: Value| json!({"metadata": {"name": "e", "namespace": ns}, "involvedObject": involved, "type": "Normal", "reason": "R"});
    assert_eq!(
        errors(
            events,
            event(
                "default",
                json!({"kind": "Pod", "name": "p", "namespace": "other"})
            )
        ),
        ["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
    // Cluster-scoped objects' events live in "default".
    assert!(
        errors(
            events,
            event("default", json!({"kind": "Node", "name": "w1"}))
        )
        .is_empty()
    );
    assert_eq!(
        errors(events, event("shop", json!({"kind": "Node", "name": "w1"}))).len(),
        1
    );
    // A new-style event through the core API must say who reported it.
    let mut new_style = event(
        "shop",
        json!({"kind": "Pod", "name": "p", "namespace": "shop"}),
    );
    new_style["eventTime"] = json!("2024-05-01T12:00:00.000000Z");
    assert_eq!(
        errors(events, new_style),
        [
            "reportingComponent: Required value",
            "reportingInstance: Required value",
            "action: Required value"
        ]
    );

    let v1 = lookup("events.k8s.io", "v1", "events").unwrap();
    let recorded = json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "eventTime": "2024-05-01T12:00:00.000000Z", "type": "Normal", "reason": "ScalingReplicaSet",
        "action": "Scale", "reportingController": "deployment-controller", "reportingInstance": "m-k8s",
        "note": "Scaled up",
    });
    assert!(errors(v1, recorded.clone()).is_empty());
    let mut old_fields = recorded;
    old_fields["type"] = json!("Info");
    old_fields["deprecatedCount"] = json!(3);
    assert_eq!(
        errors(v1, old_fields),
        [
            "type: Invalid value: \"\": has invalid value: Info",
            "count: Invalid value: \"\": needs to be unset"
        ]
    );
}

#[test]
fn the_status_message() {
    let pods = res("", "pods");
    let errs = validate(
        pods,
        &json!({"metadata": {"name": "Bad", "namespace": "default"}, "spec": {"containers": [], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}),
        None,
    );
    let message = invalid_message(pods, "Bad", &errs);
    assert!(message.starts_with("Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain"), "{message}");
    assert!(
        message.ends_with(", spec.containers: Required value]"),
        "{message}"
    );
    let one = invalid_message(
        lookup("apps", "v1", "deployments").unwrap(),
        "web",
        &errs[1..],
    );
    assert_eq!(
        one,
        "Deployment.apps \"web\" is invalid: spec.containers: Required value"
    );
    assert_eq!(errs[1].kind.reason(), "FieldValueRequired");
}
