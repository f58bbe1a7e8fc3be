//! The walkthrough with stock kubectl 1.20.2 and 1.32 against
//! `paddock server --disable-agent`, asserting what a user sees.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

fn deployment_manifest(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
"
    )
}

fn jsonpath(k: &Kubectl, args: &[&str], path: &str) -> Result<String> {
    let expr = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &expr]);
    k.run(&all)
}

fn walkthrough(k: &Kubectl, dir: &Path) -> Result<()> {
    let out = k.run(&["run", "nginx", "--image=nginx"])?;
    ensure!(out.contains("pod/nginx created"), "{out}");
    let listed = k.run(&["get", "po", "-o", "wide"])?;
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        ensure!(header.contains(&column), "no {column} column:\n{listed}");
    }
    let row = listed
        .lines()
        .find(|l| l.starts_with("nginx"))
        .unwrap_or_default();
    ensure!(row.contains("0/1") && row.contains("Pending"), "{listed}");
    ensure!(jsonpath(k, &["get", "pod", "nginx"], "{.status.phase}")? == "Pending");
    ensure!(jsonpath(k, &["get", "pod", "nginx"], "{.spec.restartPolicy}")? == "Always");

    let out = k.run(&["expose", "pod", "nginx", "--type=NodePort", "--port=80"])?;
    ensure!(out.contains("service/nginx exposed"), "{out}");
    let svc = jsonpath(
        k,
        &["get", "svc", "nginx"],
        "{.spec.type} {.spec.ports[0].port} {.spec.ports[0].nodePort} {.spec.clusterIP}",
    )?;
    let fields: Vec<&str> = svc.split_whitespace().collect();
    ensure!(
        fields.len() == 4 && fields[0] == "NodePort" && fields[1] == "80",
        "{svc}"
    );
    let node_port: u16 = fields[2].parse().context("nodePort")?;
    ensure!((30000..=32767).contains(&node_port), "{svc}");
    ensure!(fields[3].starts_with("10."), "{svc}");
    let services = k.run(&["get", "svc"])?;
    let row = services
        .lines()
        .find(|l| l.starts_with("nginx"))
        .unwrap_or_default();
    ensure!(
        row.contains("NodePort") && row.contains(&format!("80:{node_port}/TCP")),
        "{services}"
    );

    // kubectl 1.32 sends this typed create as protobuf, 1.20 as JSON.
    let out = k.run(&["create", "deployment", "deploy-nginx", "--image=nginx"])?;
    ensure!(
        out.contains("deployment.apps/deploy-nginx created"),
        "{out}"
    );
    let out = k.run(&["scale", "deployment", "deploy-nginx", "--replicas=3"])?;
    ensure!(out.contains("deployment.apps/deploy-nginx scaled"), "{out}");
    ensure!(
        jsonpath(
            k,
            &["get", "deployment", "deploy-nginx"],
            "{.spec.replicas}"
        )? == "3"
    );

    let out = k.run(&[
        "expose",
        "deployment",
        "deploy-nginx",
        "--type=LoadBalancer",
        "--port=80",
    ])?;
    ensure!(out.contains("service/deploy-nginx exposed"), "{out}");
    let lb = jsonpath(
        k,
        &["get", "svc", "deploy-nginx"],
        "{.spec.type} {.spec.ports[0].nodePort}",
    )?;
    ensure!(lb.starts_with("LoadBalancer 3"), "{lb}");
    let services = k.run(&["get", "svc", "deploy-nginx"])?;
    ensure!(
        services.contains("LoadBalancer") && services.contains("<pending>"),
        "{services}"
    );
    let deployments = k.run(&["get", "deployment", "deploy-nginx"])?;
    ensure!(
        deployments
            .lines()
            .next()
            .unwrap_or_default()
            .contains("UP-TO-DATE"),
        "{deployments}"
    );
    ensure!(
        deployments.contains("0/3"),
        "the deployment should want 3:\n{deployments}"
    );

    let manifest = dir.join(format!("web-{}.yaml", k.version));
    std::fs::write(&manifest, deployment_manifest("nginx:1.25"))?;
    let path = manifest.to_string_lossy().to_string();
    let out = k.run(&["apply", "-f", &path])?;
    ensure!(out.contains("deployment.apps/web created"), "{out}");
    std::fs::write(&manifest, deployment_manifest("nginx:1.27"))?;
    let out = k.run(&["apply", "-f", &path])?;
    ensure!(out.contains("deployment.apps/web configured"), "{out}");
    let image = jsonpath(
        k,
        &["get", "deployment", "web"],
        "{.spec.template.spec.containers[0].image}",
    )?;
    ensure!(image == "nginx:1.27", "{image}");
    let generation = jsonpath(k, &["get", "deployment", "web"], "{.metadata.generation}")?;
    ensure!(generation == "2", "{generation}");

    let all = k.run(&["get", "all"])?;
    for name in [
        "pod/nginx",
        "service/nginx",
        "service/kubernetes",
        "deployment.apps/deploy-nginx",
        "deployment.apps/web",
    ] {
        ensure!(all.contains(name), "{name} missing from `get all`:\n{all}");
    }
    let described = k.run(&["describe", "pod", "nginx"])?;
    ensure!(
        described.contains("nginx") && described.contains("Pending"),
        "{described}"
    );

    for (kind, name) in [
        ("pod", "nginx"),
        ("service", "nginx"),
        ("deployment", "deploy-nginx"),
        ("deployment", "web"),
        ("service", "deploy-nginx"),
    ] {
        let out = k.run(&["delete", kind, name])?;
        ensure!(out.contains("deleted"), "{out}");
        let gone = k.output(&["get", kind, name])?;
        ensure!(!gone.status.success(), "{kind} {name} is still there");
        ensure!(
            String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
            "{:?}",
            gone
        );
    }
    Ok(())
}

#[test]
fn walkthrough_with_kubectl_1_20() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    let k = Kubectl::v1_20(&server.kubeconfig(), server.data_dir())?;
    walkthrough(&k, server.data_dir()).with_context(|| server.log())
}

#[test]
fn walkthrough_with_kubectl_1_32() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    let k = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    walkthrough(&k, server.data_dir()).with_context(|| server.log())
}
