//! 100 malformed or invalid manifests: each gets a 4xx `Status` that says
//! what is wrong, and nothing is stored.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use paddock_testkit::server::Server;
use serde_json::{Value, json};

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

struct Case {
    what: String,
    path: &'static str,
    content_type: &'static str,
    body: String,
    code: u16,
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok"},
           "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]}})
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ok"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ok"},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}})
}

fn json_case(what: &str, path: &'static str, body: Value, code: u16) -> Case {
    Case {
        what: what.into(),
        path,
        content_type: "application/json",
        body: body.to_string(),
        code,
    }
}

/// `base` with the field at `pointer` set to `value` (its parent must exist).
fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    match base.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_string(), value);
        }
        Some(Value::Array(items)) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => panic!("{pointer} has no parent in {base}"),
    }
    base
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Malformed JSON: a valid pod cut short at 20 places.
    let text = pod().to_string();
    for i in 0..20 {
        let cut = 1 + i * (text.len() - 2) / 20;
        cases.push(Case {
            what: format!("JSON cut at {cut}"),
            path: PODS,
            content_type: "application/json",
            body: text[..cut].to_string(),
            code: 400,
        });
    }
    // Malformed YAML.
    let yaml = [
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n",
        "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: tab\n",
        "apiVersion: v1\nkind: Pod\n  metadata: bad-indent\n name: x\n",
        "apiVersion: \"v1\nkind: Pod\n",
        "- just\n- a\n- list\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  name: y\n  : z\n",
        "key: value\n  nested: wrong\n",
        "'unterminated\n",
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n   image: nginx\n",
    ];
    for (i, body) in yaml.iter().enumerate() {
        cases.push(Case {
            what: format!("YAML #{i}"),
            path: PODS,
            content_type: "application/yaml",
            body: body.to_string(),
            code: 400,
        });
    }
    // Values of the wrong type.
    let wrong_types = [
        ("/spec/containers", json!("nginx")),
        ("/spec/containers/0/ports", json!({"containerPort": 80})),
        ("/spec/containers/0/ports/0/containerPort", json!("eighty")),
        ("/spec/containers/0/image", json!(42)),
        ("/spec/containers/0/name", json!(["c"])),
        ("/metadata", json!("meta")),
        ("/metadata/labels", json!(["a", "b"])),
        ("/metadata/labels", json!({"a": 1})),
        ("/metadata/name", json!(7)),
        ("/spec", json!([1, 2])),
        ("/spec/restartPolicy", json!(true)),
        ("/spec/containers/0/env", json!({"A": "b"})),
        ("/spec/terminationGracePeriodSeconds", json!("30s")),
        ("/spec/containers/0/resources", json!({"limits": "1Gi"})),
        ("/spec/nodeSelector", json!("disk=ssd")),
    ];
    for (pointer, value) in wrong_types {
        cases.push(json_case(
            &format!("pod {pointer} = {value}"),
            PODS,
            with(pod(), pointer, value),
            400,
        ));
    }
    cases.push(json_case(
        "deployment replicas as a string",
        DEPLOYMENTS,
        with(deployment(), "/spec/replicas", json!("three")),
        400,
    ));
    cases.push(json_case(
        "deployment selector as a string",
        DEPLOYMENTS,
        with(deployment(), "/spec/selector", json!("app=x")),
        400,
    ));
    cases.push(json_case(
        "service ports as an object",
        SERVICES,
        with(service(), "/spec/ports", json!({"port": 80})),
        400,
    ));
    cases.push(json_case(
        "service port as a string",
        SERVICES,
        with(service(), "/spec/ports/0/port", json!("http")),
        400,
    ));
    cases.push(json_case(
        "configmap data as a list",
        CONFIGMAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": ["a"]}),
        400,
    ));
    // Invalid names (422 Invalid with a metadata.name cause).
    let names = [
        "Nginx",
        "web_server",
        "-web",
        "web-",
        "web..x",
        "a b",
        "ünïcode",
        "UPPER",
        "x/y",
        "dot.",
        &"a".repeat(254),
        "semi;colon",
        "web:1",
        "tab\tname",
        "%41",
    ];
    for name in names {
        cases.push(json_case(
            &format!("pod named {name:?}"),
            PODS,
            with(pod(), "/metadata/name", json!(name)),
            422,
        ));
    }
    cases.push(json_case(
        "pod without a name",
        PODS,
        with(pod(), "/metadata", json!({})),
        422,
    ));
    for name in ["Web", "web_1", "-x", "x-", "a..b"] {
        cases.push(json_case(
            &format!("deployment named {name:?}"),
            DEPLOYMENTS,
            with(deployment(), "/metadata/name", json!(name)),
            422,
        ));
    }
    // Kinds and versions that do not belong at the URL.
    let mismatched = [
        (PODS, with(pod(), "/kind", json!("Service"))),
        (PODS, with(pod(), "/apiVersion", json!("apps/v1"))),
        (PODS, with(pod(), "/apiVersion", json!("v2"))),
        (PODS, with(pod(), "/kind", json!("pod"))),
        (SERVICES, with(service(), "/kind", json!("Pod"))),
        (DEPLOYMENTS, with(deployment(), "/apiVersion", json!("v1"))),
        (
            DEPLOYMENTS,
            with(deployment(), "/apiVersion", json!("extensions/v1beta1")),
        ),
        (CONFIGMAPS, with(pod(), "/metadata/name", json!("cm"))),
        (PODS, with(pod(), "/kind", json!(""))),
        (PODS, with(pod(), "/apiVersion", json!(""))),
    ];
    for (i, (path, body)) in mismatched.into_iter().enumerate() {
        cases.push(json_case(
            &format!("mismatched kind/version #{i}"),
            path,
            body,
            400,
        ));
    }
    let mut no_kind = pod();
    no_kind.as_object_mut().map(|o| o.remove("kind"));
    cases.push(json_case("no kind", PODS, no_kind, 400));
    let mut no_version = pod();
    no_version.as_object_mut().map(|o| o.remove("apiVersion"));
    cases.push(json_case("no apiVersion", PODS, no_version, 400));
    // Other namespaces than the URL's.
    for ns in ["kube-system", "other"] {
        cases.push(json_case(
            &format!("namespace {ns} in the body"),
            PODS,
            with(pod(), "/metadata", json!({"name": "x", "namespace": ns})),
            400,
        ));
    }
    // Bodies that are not objects.
    for body in [
        "[]",
        "\"pod\"",
        "42",
        "null",
        "true",
        "   ",
        "{}",
        "[{\"kind\": \"Pod\"}]",
        "\u{feff}{}",
    ] {
        cases.push(Case {
            what: format!("body {body:?}"),
            path: PODS,
            content_type: "application/json",
            body: body.into(),
            code: 400,
        });
    }
    // Unknown fields under strict field validation.
    for (pointer, field) in [
        ("/spec", "containerz"),
        ("/metadata", "nmae"),
        ("/spec/containers/0", "imagee"),
    ] {
        let mut body = pod();
        if let Some(obj) = body.pointer_mut(pointer).and_then(Value::as_object_mut) {
            obj.insert(field.into(), json!("x"));
        }
        cases.push(Case {
            what: format!("unknown field {field}"),
            path: "/api/v1/namespaces/default/pods?fieldValidation=Strict",
            content_type: "application/json",
            body: body.to_string(),
            code: 400,
        });
    }
    // A namespace that does not exist.
    cases.push(Case {
        what: "missing namespace".into(),
        path: "/api/v1/namespaces/nowhere/pods",
        content_type: "application/json",
        body: pod().to_string(),
        code: 404,
    });
    // A body format the server does not read.
    cases.push(Case {
        what: "unsupported media type".into(),
        path: PODS,
        content_type: "text/plain",
        body: pod().to_string(),
        code: 415,
    });
    // Over 3 MiB.
    let big = with(
        pod(),
        "/metadata/annotations",
        json!({"big": "x".repeat(3 * 1024 * 1024 + 10)}),
    );
    cases.push(json_case("body over 3 MiB", PODS, big, 413));
    cases
}

/// How many objects of each kind exist.
fn counts(server: &Server) -> Result<Vec<usize>> {
    [
        PODS,
        DEPLOYMENTS,
        SERVICES,
        CONFIGMAPS,
        "/api/v1/namespaces",
    ]
    .iter()
    .map(|path| {
        let out = server.curl(&[path])?;
        let list: Value = serde_json::from_slice(&out.stdout).context("a list")?;
        Ok(list["items"].as_array().map_or(0, Vec::len))
    })
    .collect()
}

#[test]
fn malformed_and_invalid_manifests_get_a_4xx_status_and_store_nothing() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    let before = counts(&server)?;
    let cases = cases();
    ensure!(cases.len() == 100, "{} cases", cases.len());
    let body_file = server.data_dir().join("body");
    for case in &cases {
        std::fs::write(&body_file, &case.body)?;
        let data = format!("@{}", body_file.display());
        let content_type = format!("Content-Type: {}", case.content_type);
        let out = server.curl(&[
            "-X",
            "POST",
            "-H",
            &content_type,
            "--data-binary",
            &data,
            "-w",
            "\n%{http_code}",
            case.path,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        let status: Value = serde_json::from_str(body)
            .with_context(|| format!("{}: not a Status: {text}", case.what))?;
        ensure!(
            code == case.code.to_string(),
            "{}: expected {}, got {code}: {body}",
            case.what,
            case.code
        );
        ensure!(
            status["kind"] == "Status"
                && status["status"] == "Failure"
                && status["code"] == case.code,
            "{}: {status}",
            case.what
        );
        let message = status["message"].as_str().unwrap_or_default();
        ensure!(
            message.len() > 10,
            "{}: no clear message: {status}",
            case.what
        );
        if case.code == 422 {
            let causes = status
                .pointer("/details/causes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            ensure!(
                causes.iter().any(|c| c["field"] == "metadata.name"),
                "{}: no metadata.name cause: {status}",
                case.what
            );
        }
    }
    ensure!(counts(&server)? == before, "something was stored");
    Ok(())
}
