//! kubectl 1.32's typed commands send `application/vnd.kubernetes.protobuf`
//! bodies (`kubectl create deployment|service|configmap|secret|namespace|
//! serviceaccount`, `kubectl drain --disable-eviction`'s DeleteOptions):
//! `paddock server --disable-agent` decodes them into the objects a JSON
//! client would have created. The subresource bodies other typed clients
//! send as protobuf (Binding, Scale, Eviction) are encoded here with k8s-pb.
//! Malformed protobuf gets a 400 Status and stores nothing.

use anyhow::{Context, Result, ensure};
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;
use prost::Message;
use serde_json::Value;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

fn get_json(k: &Kubectl, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let out = k.run(&all)?;
    serde_json::from_str(&out).with_context(|| format!("kubectl get {args:?}: {out}"))
}

fn created(k: &Kubectl, args: &[&str], expect: &str) -> Result<()> {
    let out = k.run(args)?;
    ensure!(out.contains(expect), "kubectl {args:?}: {out}");
    Ok(())
}

/// A protobuf body as client-go sends it: the magic, then a
/// `runtime.Unknown` holding the type and the encoded message.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

fn object_meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    })
}

/// Sends `body` as protobuf: the HTTP code and the JSON response.
fn send_protobuf(
    server: &Server,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(String, Value)> {
    let file = server.data_dir().join("body.pb");
    std::fs::write(&file, body)?;
    let data = format!("@{}", file.display());
    let out = server.curl(&[
        "-X",
        method,
        "-H",
        "Content-Type: application/vnd.kubernetes.protobuf",
        "-w",
        "\n%{http_code}",
        "--data-binary",
        &data,
        path,
    ])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (response, code) = text.rsplit_once('\n').context("curl's status line")?;
    Ok((
        code.to_owned(),
        serde_json::from_str(response).context(text.clone())?,
    ))
}

#[test]
fn kubectl_1_32_typed_commands_send_protobuf() -> Result<()> {
    let server = Server::start(PADDOCK.as_ref(), &[])?;
    let k = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    run(&server, &k).with_context(|| server.log())
}

fn run(server: &Server, k: &Kubectl) -> Result<()> {
    // kubectl really sends protobuf (else this test would prove nothing).
    let traced = k.output(&[
        "create",
        "deployment",
        "deploy-nginx",
        "--image=nginx",
        "-v=8",
    ])?;
    let log = String::from_utf8_lossy(&traced.stderr);
    ensure!(traced.status.success(), "{log}");
    ensure!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf:\n{log}"
    );

    let deployment = get_json(k, &["deployment", "deploy-nginx"])?;
    ensure!(deployment["spec"]["replicas"] == 1, "{deployment}");
    ensure!(
        deployment["metadata"]["labels"]["app"] == "deploy-nginx",
        "{deployment}"
    );
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        container["image"] == "nginx" && container["name"] == "nginx",
        "{deployment}"
    );
    // Upstream's defaults, not the zero values the protobuf body carries.
    ensure!(container["imagePullPolicy"] == "Always", "{deployment}");
    ensure!(
        deployment["spec"]["strategy"]["type"] == "RollingUpdate",
        "{deployment}"
    );
    ensure!(
        deployment["spec"]["template"]["spec"]["restartPolicy"] == "Always",
        "{deployment}"
    );
    // A pointer field's zero survives the protobuf encoding.
    created(
        k,
        &[
            "create",
            "deployment",
            "idle",
            "--image=nginx:1.25",
            "--replicas=0",
            "--port=80",
        ],
        "deployment.apps/idle created",
    )?;
    let idle = get_json(k, &["deployment", "idle"])?;
    ensure!(idle["spec"]["replicas"] == 0, "{idle}");
    ensure!(
        idle["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 80,
        "{idle}"
    );

    created(
        k,
        &["scale", "deployment", "deploy-nginx", "--replicas=3"],
        "deployment.apps/deploy-nginx scaled",
    )?;
    ensure!(get_json(k, &["deployment", "deploy-nginx"])?["spec"]["replicas"] == 3);

    created(
        k,
        &[
            "create",
            "service",
            "nodeport",
            "web",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
        "service/web created",
    )?;
    let web = get_json(k, &["service", "web"])?;
    let port = &web["spec"]["ports"][0];
    ensure!(web["spec"]["type"] == "NodePort", "{web}");
    ensure!(
        port["port"] == 80 && port["targetPort"] == 8080 && port["nodePort"] == 30080,
        "{web}"
    );
    ensure!(
        port["protocol"] == "TCP" && web["spec"]["selector"]["app"] == "web",
        "{web}"
    );
    let services = k.run(&["get", "svc", "web"])?;
    ensure!(services.contains("80:30080/TCP"), "{services}");
    created(
        k,
        &["create", "service", "clusterip", "cip", "--tcp=5678:8080"],
        "service/cip created",
    )?;
    let cip = get_json(k, &["service", "cip"])?;
    ensure!(cip["spec"]["type"] == "ClusterIP", "{cip}");
    ensure!(
        cip["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{cip}"
    );
    created(
        k,
        &["create", "service", "loadbalancer", "lb", "--tcp=80"],
        "service/lb created",
    )?;
    let lb = get_json(k, &["service", "lb"])?;
    ensure!(
        lb["spec"]["type"] == "LoadBalancer" && lb["spec"]["ports"][0]["targetPort"] == 80,
        "{lb}"
    );

    created(
        k,
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "--from-literal=b=two",
        ],
        "configmap/cfg created",
    )?;
    let cfg = get_json(k, &["configmap", "cfg"])?;
    ensure!(
        cfg["data"] == serde_json::json!({"a": "1", "b": "two"}),
        "{cfg}"
    );

    created(
        k,
        &[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal=password=s3cr3t",
        ],
        "secret/sec created",
    )?;
    let sec = get_json(k, &["secret", "sec"])?;
    // base64 of "s3cr3t": the bytes arrived intact.
    ensure!(
        sec["data"]["password"] == "czNjcjN0" && sec["type"] == "Opaque",
        "{sec}"
    );

    created(
        k,
        &["create", "namespace", "team-a"],
        "namespace/team-a created",
    )?;
    let ns = get_json(k, &["namespace", "team-a"])?;
    ensure!(ns["status"]["phase"] == "Active", "{ns}");
    created(
        k,
        &["create", "serviceaccount", "robot", "-n", "team-a"],
        "serviceaccount/robot created",
    )?;
    get_json(k, &["serviceaccount", "robot", "-n", "team-a"])?;

    // Subresource bodies: Binding (what upstream's scheduler sends), Scale
    // (HPA), Eviction (client-go's typed clients).
    // The node it is bound to exists: the node controller deletes pods bound
    // to nodes that do not.
    k.run_with_input(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: n0}\n",
    )?;
    created(k, &["run", "bindme", "--image=nginx"], "pod/bindme created")?;
    let binding = core::Binding {
        metadata: object_meta("bindme"),
        target: Some(core::ObjectReference {
            kind: Some("Node".into()),
            name: Some("n0".into()),
            ..Default::default()
        }),
    };
    let pod = "/api/v1/namespaces/default/pods/bindme";
    let body = envelope("v1", "Binding", binding.encode_to_vec());
    let (code, status) = send_protobuf(server, "POST", &format!("{pod}/binding"), &body)?;
    ensure!(code == "201", "{code} {status}");
    let bound = get_json(k, &["pod", "bindme"])?;
    ensure!(bound["spec"]["nodeName"] == "n0", "{bound}");

    let scale = k8s_pb::api::autoscaling::v1::Scale {
        metadata: object_meta("idle"),
        spec: Some(k8s_pb::api::autoscaling::v1::ScaleSpec { replicas: Some(2) }),
        status: None,
    };
    let body = envelope("autoscaling/v1", "Scale", scale.encode_to_vec());
    let path = "/apis/apps/v1/namespaces/default/deployments/idle/scale";
    let (code, scaled) = send_protobuf(server, "PUT", path, &body)?;
    ensure!(
        code == "200" && scaled["spec"]["replicas"] == 2,
        "{code} {scaled}"
    );
    ensure!(get_json(k, &["deployment", "idle"])?["spec"]["replicas"] == 2);

    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: object_meta("bindme"),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    let body = envelope("policy/v1", "Eviction", eviction.encode_to_vec());
    let (code, status) = send_protobuf(server, "POST", &format!("{pod}/eviction"), &body)?;
    ensure!(
        code == "201" && status["status"] == "Success",
        "{code} {status}"
    );
    let evicted = k.output(&["get", "pod", "bindme"])?;
    ensure!(
        String::from_utf8_lossy(&evicted.stderr).contains("NotFound"),
        "a pod evicted with grace period 0 is gone: {evicted:?}"
    );

    // `kubectl drain --disable-eviction` deletes with protobuf DeleteOptions.
    k.run_with_input(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: List\nitems:\n\
         - {apiVersion: v1, kind: Node, metadata: {name: n1}}\n\
         - {apiVersion: v1, kind: Pod, metadata: {name: p1}, spec: {nodeName: n1, containers: [{name: c, image: nginx}]}}\n",
    )?;
    let drained = k.run(&[
        "drain",
        "n1",
        "--force",
        "--disable-eviction",
        "--grace-period=0",
        "--timeout=20s",
    ])?;
    ensure!(
        drained.contains("pod/p1 deleted") && drained.contains("node/n1 drained"),
        "{drained}"
    );

    // Malformed protobuf: 400 with a Status saying what is wrong, and
    // nothing stored.
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let broken = core::ConfigMap {
        metadata: object_meta("broken"),
        ..Default::default()
    };
    let mut raw = broken.encode_to_vec();
    raw.truncate(raw.len() / 2);
    let body = envelope("v1", "ConfigMap", raw);
    let (code, status) = send_protobuf(server, "POST", configmaps, &body)?;
    ensure!(
        code == "400" && status["kind"] == "Status" && status["reason"] == "BadRequest",
        "{code} {status}"
    );
    ensure!(
        status["message"]
            == "the request body is not a valid protobuf object: metadata: a field is cut short",
        "{status}"
    );
    let (code, status) = send_protobuf(
        server,
        "POST",
        configmaps,
        br#"{"apiVersion":"v1","kind":"ConfigMap"}"#,
    )?;
    ensure!(code == "400", "{code} {status}");
    ensure!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not start with the protobuf magic")),
        "{status}"
    );
    let gone = k.output(&["get", "configmap", "broken"])?;
    ensure!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{gone:?}"
    );
    Ok(())
}
