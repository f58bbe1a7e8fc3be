//! EndpointSlices, Endpoints and LoadBalancer addresses against a real
//! `paddock server --disable-agent --lb-pool …`, with fake nodes whose pods
//! the test marks ready.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use paddock_testkit::fake_nodes::FakeNodes;
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;
use paddock_testkit::wait;

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx, ports: [{name: http, containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
";

fn lb(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n{extra}  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n"
    )
}

fn slices(nodes: &FakeNodes, service: &str) -> Result<Vec<EndpointSlice>> {
    let api: Api<EndpointSlice> = Api::namespaced(nodes.client(), "default");
    let selector = format!("kubernetes.io/service-name={service}");
    Ok(nodes
        .block_on(api.list(&ListParams::default().labels(&selector)))?
        .items)
}

/// `(ready, not ready)` endpoint addresses over all of a service's slices.
fn slice_readiness(nodes: &FakeNodes, service: &str) -> Result<(usize, usize)> {
    let mut counts = (0, 0);
    for slice in slices(nodes, service)? {
        for ep in slice.endpoints.iter().flatten() {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    Ok(counts)
}

fn wait_for<T>(what: &str, probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    wait::until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(200),
        probe,
    )
}

#[test]
fn endpoint_slices_follow_readiness() -> Result<()> {
    let server = Server::start(Path::new(env!("CARGO_BIN_EXE_paddock")), &[])?;
    let nodes = FakeNodes::start(&server.kubeconfig(), &["w1", "w2", "w3"], false)?;
    let kubectl = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    kubectl.run_with_input(&["apply", "-f", "-"], WEB)?;

    wait_for("two not-ready endpoints", || {
        Ok((slice_readiness(&nodes, "web")? == (0, 2)).then_some(()))
    })
    .map_err(|e| {
        let state = kubectl
            .run(&["get", "pods,endpointslices,endpoints,nodes", "-o", "wide"])
            .unwrap_or_default();
        e.context(format!("{state}\n{}", server.log()))
    })?;
    let slice = &slices(&nodes, "web")?[0];
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(80));
    assert!(
        slice
            .endpoints
            .iter()
            .flatten()
            .all(|e| e.node_name.is_some() && e.target_ref.is_some())
    );

    let names: Vec<String> = nodes
        .pods("app=web")?
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    nodes.mark_ready("default", &names[0]);
    wait_for("one ready endpoint", || {
        Ok((slice_readiness(&nodes, "web")? == (1, 1)).then_some(()))
    })?;
    let ep_api: Api<Endpoints> = Api::namespaced(nodes.client(), "default");
    let ep = nodes.block_on(ep_api.get("web"))?;
    let subset = &ep.subsets.unwrap_or_default()[0];
    assert_eq!(subset.addresses.as_ref().map(Vec::len), Some(1));
    assert_eq!(subset.not_ready_addresses.as_ref().map(Vec::len), Some(1));
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 80);

    nodes.mark_ready("default", &names[1]);
    wait_for("two ready endpoints", || {
        Ok((slice_readiness(&nodes, "web")? == (2, 0)).then_some(()))
    })?;
    let shown = kubectl.run(&["get", "endpoints", "web"])?;
    assert!(shown.contains(":80,"), "{shown}");

    kubectl.run(&["scale", "deployment", "web", "--replicas=1"])?;
    wait_for("one endpoint left", || {
        Ok((slice_readiness(&nodes, "web")? == (1, 0)).then_some(()))
    })?;

    // A service without a selector is the user's to fill.
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: manual}\nspec:\n  ports: [{port: 80}]\n",
    )?;
    std::thread::sleep(Duration::from_secs(2));
    assert!(slices(&nodes, "manual")?.is_empty());
    assert!(nodes.block_on(ep_api.get_opt("manual"))?.is_none());

    kubectl.run(&["delete", "service", "web"])?;
    wait_for("the slices and endpoints to go", || {
        Ok(
            (slices(&nodes, "web")?.is_empty() && nodes.block_on(ep_api.get_opt("web"))?.is_none())
                .then_some(()),
        )
    })?;
    Ok(())
}

#[test]
fn load_balancers_get_pool_addresses() -> Result<()> {
    let server = Server::start(
        Path::new(env!("CARGO_BIN_EXE_paddock")),
        &["--lb-pool", "192.168.56.200-192.168.56.201"],
    )?;
    let _nodes = FakeNodes::start(&server.kubeconfig(), &["w1"], true)?;
    let kubectl = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    let external_ip = |name: &str| -> Result<String> {
        kubectl.run(&[
            "get",
            "service",
            name,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ])
    };
    kubectl.run_with_input(&["apply", "-f", "-"], &lb("first", ""))?;
    wait_for("the first address", || {
        Ok((external_ip("first")? == "192.168.56.200").then_some(()))
    })
    .map_err(|e| e.context(server.log()))?;
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        &lb("second", "  loadBalancerIP: 192.168.56.201\n"),
    )?;
    wait_for("the requested address", || {
        Ok((external_ip("second")? == "192.168.56.201").then_some(()))
    })?;
    kubectl.run_with_input(&["apply", "-f", "-"], &lb("third", ""))?;
    std::thread::sleep(Duration::from_secs(2));
    let shown = kubectl.run(&["get", "service", "third"])?;
    assert!(
        shown.contains("<pending>"),
        "the pool is exhausted: {shown}"
    );

    kubectl.run(&["delete", "service", "first"])?;
    wait_for("the freed address to be reused", || {
        Ok((external_ip("third")? == "192.168.56.200").then_some(()))
    })?;
    kubectl.run(&["patch", "service", "second", "-p", r#"{"spec":{"type":"ClusterIP","externalTrafficPolicy":null,"ports":[{"port":80,"nodePort":null}]}}"#])?;
    wait_for("the address to be released", || {
        Ok(external_ip("second")?.is_empty().then_some(()))
    })?;

    // Another implementation's class: it sets the address, the pool's
    // controller leaves the service alone, and the freed address goes to
    // the next service without a class.
    kubectl.run_with_input(
        &["apply", "-f", "-"],
        &lb("theirs", "  loadBalancerClass: example.com/metallb\n"),
    )?;
    kubectl.run(&[
        "patch",
        "service",
        "theirs",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}}"#,
    ])?;
    kubectl.run_with_input(&["apply", "-f", "-"], &lb("fourth", ""))?;
    wait_for("the next classless service to get the free address", || {
        Ok((external_ip("fourth")? == "192.168.56.201").then_some(()))
    })?;
    assert_eq!(external_ip("theirs")?, "203.0.113.7");
    Ok(())
}
