//! Bodies kubectl 1.32 really sent (`testdata/`, captured from `kubectl
//! -v=9`, which logs them as hex dumps), and messages encoded by k8s-pb
//! (prost types generated from upstream's .proto files), decoded to JSON.

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/src/protobuf/testdata/{name}.pb",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `message` in the envelope kubectl sends.
fn body(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

#[test]
fn create_deployment() {
    assert_eq!(
        fixture("create-deployment-replicas-0"),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]},
                },
            },
            "status": {},
        })
    );
    let web2 = fixture("create-deployment-port");
    assert_eq!(web2["spec"]["replicas"], 3);
    assert_eq!(
        web2["spec"]["template"]["spec"]["containers"][0],
        json!({"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}], "resources": {}})
    );
}

#[test]
fn create_services() {
    let nodeport = fixture("create-service-nodeport");
    assert_eq!(
        nodeport["spec"],
        json!({
            "ports": [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}],
            "selector": {"app": "web"},
            "type": "NodePort",
        })
    );
    assert_eq!(
        fixture("create-service-loadbalancer")["spec"]["type"],
        "LoadBalancer"
    );
    assert_eq!(
        fixture("create-service-clusterip")["spec"]["ports"][0]["targetPort"],
        8080
    );
    assert_eq!(
        fixture("create-service-headless")["spec"]["clusterIP"],
        "None"
    );
}

#[test]
fn create_configmap_secret_namespace_serviceaccount() {
    assert_eq!(
        fixture("create-configmap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "two"}})
    );
    // Secret data is bytes: base64 in JSON.
    assert_eq!(
        fixture("create-secret-generic"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "data": {"password": "czNjcjN0"}})
    );
    assert_eq!(
        fixture("create-secret-docker-registry")["type"],
        "kubernetes.io/dockerconfigjson"
    );
    assert_eq!(
        fixture("create-namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {}, "status": {}})
    );
    assert_eq!(
        fixture("create-serviceaccount"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    );
    assert_eq!(
        fixture("drain-delete"),
        json!({"apiVersion": "v1", "kind": "DeleteOptions"})
    );
}

/// What kubectl's bodies do not exercise: embedded structs, int-or-strings,
/// quantities, times, pointer zeros, packed and repeated scalars.
#[test]
fn pod_encoded_by_k8s_pb() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            deletion_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            termination_grace_period_seconds: Some(0),
            enable_service_links: Some(false),
            host_network: Some(false),
            restart_policy: Some(String::new()),
            volumes: vec![core::Volume {
                name: Some("cfg".into()),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: Some("c".into()),
                        }),
                        default_mode: Some(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: Some("c".into()),
                args: vec![String::new(), "-v".into()],
                resources: Some(core::ResourceRequirements {
                    limits: [(
                        "cpu".to_string(),
                        Quantity {
                            string: Some("500m".into()),
                        },
                    )]
                    .into(),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: Some(0),
                                str_val: Some("http".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            security_context: Some(core::PodSecurityContext {
                supplemental_groups: vec![0, 1000],
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode(&body("v1", "Pod", &pod)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "enableServiceLinks": false,
                "volumes": [{"name": "cfg", "configMap": {"name": "c", "defaultMode": 0}}],
                "containers": [{
                    "name": "c",
                    "args": ["", "-v"],
                    "resources": {"limits": {"cpu": "500m"}},
                    "readinessProbe": {"httpGet": {"port": "http"}},
                }],
                "securityContext": {"supplementalGroups": [0, 1000], "runAsUser": 0},
            },
        })
    );
}

#[test]
fn pointer_int_or_string_zero_is_kept() {
    use k8s_pb::api::apps::v1 as apps;
    let zero = IntOrString {
        r#type: Some(0),
        int_val: Some(0),
        str_val: Some(String::new()),
    };
    let deployment = apps::Deployment {
        spec: Some(apps::DeploymentSpec {
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(zero.clone()),
                    max_surge: Some(IntOrString {
                        str_val: Some("50%".into()),
                        r#type: Some(1),
                        ..zero
                    }),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let json = decode(&body("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(
        json["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}})
    );
}

#[test]
fn subresource_bodies() {
    let binding = core::Binding {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        target: Some(core::ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&body("v1", "Binding", &binding)).unwrap(),
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}})
    );
    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&body("policy/v1", "Eviction", &eviction)).unwrap(),
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}, "deleteOptions": {"gracePeriodSeconds": 0}})
    );
    let scale = k8s_pb::api::autoscaling::v1::Scale {
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(0) }),
        ..Default::default()
    };
    assert_eq!(
        decode(&body("autoscaling/v1", "Scale", &scale)).unwrap()["spec"],
        json!({"replicas": 0})
    );
}

/// Every served kind has a message in the table.
#[test]
fn every_served_kind_decodes() {
    for res in crate::resources::RESOURCES {
        let name = message_name(&res.api_version(), res.kind);
        assert!(name.is_some(), "{} {}", res.api_version(), res.kind);
    }
}

fn error(bytes: &[u8]) -> String {
    decode(bytes).unwrap_err().to_string()
}

#[test]
fn malformed_bodies() {
    assert_eq!(
        error(b"{\"kind\":\"Pod\"}"),
        "the body does not start with the protobuf magic"
    );
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let good = body("v1", "ConfigMap", &cm);
    assert_eq!(error(&good[..good.len() / 2]), "a field is cut short");
    assert_eq!(
        error(&body("v1", "Frobnicator", &core::ConfigMap::default())),
        "no protobuf encoding is known for v1 Frobnicator"
    );
    // A string field holding a varint.
    let mut raw = Vec::new();
    prost::encoding::int32::encode(3, &7, &mut raw);
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        }),
        raw: Some(raw),
        ..Default::default()
    };
    let bytes = [MAGIC, &unknown.encode_to_vec()].concat();
    assert_eq!(
        error(&bytes),
        "status: expected a length-delimited field, got Varint"
    );
    // Invalid UTF-8 in a name.
    let mut bytes = good;
    let at = bytes.iter().rposition(|b| *b == b'x').unwrap();
    bytes[at] = 0xff;
    assert_eq!(
        error(&bytes),
        "metadata.name: invalid utf-8 sequence of 1 bytes from index 0"
    );
}
