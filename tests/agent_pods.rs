//! Acceptance of the agent (issue 5) on Paddock's embedded runtime: the
//! scenarios in `agent/mod.rs`, plus what does not depend on the runtime
//! (joining, the kubelet API's authentication).

mod agent;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use paddock_testkit::cluster::{Cluster, Runtime};
use paddock_testkit::wait;

#[test]
fn nginx_runs_serves_logs_and_survives_an_agent_crash() -> Result<()> {
    agent::nginx_runs_serves_logs_and_survives_an_agent_crash(Runtime::Paddock)
}

#[test]
fn crash_loops_back_off_and_readiness_gates_ready() -> Result<()> {
    agent::crash_loops_back_off_and_readiness_gates_ready(Runtime::Paddock)
}

#[test]
fn kubectl_exec_runs_commands_in_the_container() -> Result<()> {
    agent::kubectl_exec_runs_commands_in_the_container(Runtime::Paddock)
}

#[test]
fn delete_stops_within_the_grace_period() -> Result<()> {
    agent::delete_stops_within_the_grace_period(Runtime::Paddock)
}

#[test]
fn two_hundred_pods_leave_nothing_behind() -> Result<()> {
    agent::two_hundred_pods_leave_nothing_behind(Runtime::Paddock)
}

/// A token pinning another CA is refused with upstream's words; an agent
/// started before its server waits, and joins when the server comes up.
#[test]
fn joins_only_the_pinned_server_and_waits_for_it() -> Result<()> {
    let mut cluster = Cluster::prepare(Path::new(env!("CARGO_BIN_EXE_paddock")), Runtime::Paddock)?;
    cluster.start_server()?;
    let token = cluster.token()?;
    // Another CA's hash: flip the first hex digit after "K10".
    let digit = token.chars().nth(3).context("short token")?;
    let flipped = if digit == '0' { '1' } else { '0' };
    let wrong = format!("K10{flipped}{}", &token[4..]);
    let out = cluster.agent_command(&["--token", &wrong])?.output()?;
    assert!(!out.status.success());
    let log = std::fs::read_to_string(cluster.dir().join("agent.log"))?;
    assert!(
        log.contains("couldn't validate the identity of the API Server"),
        "{log}"
    );

    cluster.stop_server()?;
    cluster.start_agent(&[])?;
    wait::until(
        "the agent to wait for the server",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let log = std::fs::read_to_string(cluster.dir().join("agent.log"))?;
            Ok(log.contains("waiting for the server").then_some(()))
        },
    )?;
    cluster.start_server()?;
    cluster.wait_node_ready(Duration::from_secs(90))
}

/// The kubelet API answers the API server's kubelet client only; its
/// metrics have upstream's pod start histogram.
#[test]
fn the_kubelet_api_serves_only_the_api_server() -> Result<()> {
    let cluster = agent::cluster(Runtime::Paddock)?;
    let ok = cluster.kubelet_api("/healthz", None)?;
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok");
    let admin = (
        cluster.server_tls("client-admin.crt"),
        cluster.server_tls("client-admin.key"),
    );
    let forbidden = cluster.kubelet_api("/healthz", Some((&admin.0, &admin.1)))?;
    assert!(
        String::from_utf8_lossy(&forbidden.stdout).contains("Forbidden"),
        "{forbidden:?}"
    );
    let anonymous = cluster
        .ns
        .command("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(cluster.server_tls("ca.crt"))
        .arg(format!(
            "https://{}:10250/healthz",
            paddock_testkit::cluster::NODE_IP
        ))
        .output()?;
    assert!(
        !anonymous.status.success(),
        "a client without a certificate got in: {anonymous:?}"
    );
    cluster.kubectl(&["run", "web", "--image=nginx"])?;
    cluster.wait_ready("web", Duration::from_secs(90))?;
    let metrics = cluster.kubelet_api("/metrics", None)?;
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("kubelet_pod_start_duration_seconds_count 1"),
        "{metrics}"
    );
    Ok(())
}

/// The agent registers its Node with `--node-taint`s, and its embedded
/// proxy (configured by `--kube-proxy-arg`) takes a Service's cluster IP to
/// the pod behind it.
#[test]
fn the_node_is_tainted_and_its_proxy_serves_services() -> Result<()> {
    let mut cluster = Cluster::prepare(Path::new(env!("CARGO_BIN_EXE_paddock")), Runtime::Paddock)?;
    cluster.start_server()?;
    cluster.start_agent(&[
        "--node-taint",
        "dedicated=web:PreferNoSchedule",
        "--kube-proxy-arg",
        "proxy-mode=iptables",
        "--kube-proxy-arg",
        "masquerade-all=true",
    ])?;
    cluster.wait_node_ready(Duration::from_secs(60))?;
    let node = cluster.get("node", cluster.node_name())?;
    assert_eq!(
        node["spec"]["taints"],
        serde_json::json!([{"key": "dedicated", "value": "web", "effect": "PreferNoSchedule"}]),
        "{node:#}"
    );

    // A node routes service IPs by its default route; this one has none.
    cluster.ns.ip(&[
        "route",
        "add",
        "10.96.0.0/12",
        "dev",
        "lo",
        "src",
        paddock_testkit::cluster::NODE_IP,
    ])?;
    cluster.kubectl(&["run", "web", "--image=nginx", "--port=80", "--expose"])?;
    cluster.wait_ready("web", Duration::from_secs(90))?;
    let ip = cluster.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    let page = wait::until(
        "the service to serve",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || Ok(cluster.curl(&[&format!("http://{ip}/")]).ok()),
    )
    .with_context(|| cluster.logs())?;
    assert!(page.contains("Welcome to nginx!"), "{page}");
    Ok(())
}

/// `paddock server` without `--disable-agent` is a whole node: its agent,
/// runtime and proxy run in the server's process and serve a pod and its
/// Service.
#[test]
fn a_server_without_disable_agent_runs_pods() -> Result<()> {
    let cluster =
        Cluster::start_single(Path::new(env!("CARGO_BIN_EXE_paddock")), Runtime::Paddock)?;
    cluster.ns.ip(&[
        "route",
        "add",
        "10.96.0.0/12",
        "dev",
        "lo",
        "src",
        paddock_testkit::cluster::NODE_IP,
    ])?;
    cluster.kubectl(&["run", "web", "--image=nginx", "--port=80", "--expose"])?;
    let pod = cluster.wait_ready("web", Duration::from_secs(90))?;
    assert_eq!(pod["spec"]["nodeName"], cluster.node_name());
    let ip = cluster.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?;
    let page = wait::until(
        "the service to serve",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || Ok(cluster.curl(&[&format!("http://{ip}/")]).ok()),
    )
    .with_context(|| cluster.logs())?;
    assert!(page.contains("Welcome to nginx!"), "{page}");
    let logs = wait::until(
        "the request in kubectl logs",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let logs = cluster.kubectl(&["logs", "web"])?;
            Ok(logs.contains("GET / HTTP/1.1").then_some(logs))
        },
    )?;
    assert!(logs.contains("curl/"), "{logs}");
    Ok(())
}
