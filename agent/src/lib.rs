//! paddock-agent: Paddock's kubelet. It joins a server with a token, keeps
//! its Node and Lease up to date, writes the pod network's CNI config and
//! routes, and runs the pods bound to its node through one CRI client —
//! Paddock's runtime or containerd, whichever serves the socket.
//!
//! - `join`: the token, the CA pin and the node's credentials.
//! - `cri`: the CRI client.
//! - `node`: registration, status and the Lease heartbeat.
//! - `network`: the CNI conflist for the node's podCIDR, forwarding, host-gw routes.
//! - `pods`: one worker per pod: sandbox, containers, probes, status.
//! - `server`: the kubelet API (logs, healthz, metrics) on :10250.
//! - `events`, `logs`, `metrics`, `quantity`: what those share.

pub mod config;
pub mod cri;
mod events;
pub mod join;
mod logs;
mod metrics;
pub mod network;
mod node;
mod pods;
mod quantity;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;

pub use config::{Config, Timing};

/// A node that has joined its server: its credentials, and an API client
/// with its identity (which the proxy of the node uses too).
#[derive(Clone)]
pub struct Joined {
    pub credentials: join::Credentials,
    pub client: kube::Client,
}

/// Joins the server (or takes the credentials kept from an earlier join),
/// waiting for the server to come up.
pub async fn join(config: &Config) -> Result<Joined> {
    let token: join::Token = config.token.parse()?;
    let credentials = join::Join {
        server: &config.server,
        token: &token,
        node_name: &config.node_name,
        addresses: vec![config.node_ip.to_string()],
        dir: &config.agent_dir().join("tls"),
    }
    .credentials()
    .await?;
    let client = join::client(&config.server, &credentials)?;
    Ok(Joined {
        credentials,
        client,
    })
}

/// Runs the agent of a joined node until one of its parts fails (or the
/// future is dropped, which stops it; running pods keep running).
pub async fn run(config: Config, joined: Joined) -> Result<()> {
    let Joined {
        credentials,
        client,
    } = joined;

    let (cri, version) = cri::Cri::connect(&config.runtime_endpoint).await?;
    tracing::info!(
        runtime = version.runtime_name,
        version = version.runtime_version,
        "connected to the container runtime"
    );
    let machine = node::machine::Machine::read(&config.data_dir)?;
    let (events, write_events) = events::Recorder::new(client.clone(), config.node_name.clone());
    let metrics = metrics::Metrics::default();
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    tasks.spawn(async move {
        write_events.await;
        Ok(())
    });

    let reporter = node::Reporter {
        client: client.clone(),
        cri: cri.clone(),
        name: config.node_name.clone(),
        ip: config.node_ip,
        labels: config.node_labels.clone(),
        taints: config.node_taints.clone(),
        max_pods: config.max_pods,
        kubelet_port: config.kubelet_port,
        data_dir: config.data_dir.clone(),
        machine: machine.clone(),
        runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
        events: events.clone(),
        check_period: config.timing.node_status_check,
        report_period: config.timing.node_status_report,
    };
    register(&reporter).await;
    tasks.spawn(reporter.run());
    let lease = node::run_lease(
        client.clone(),
        config.node_name.clone(),
        config.timing.lease_renew,
    );
    tasks.spawn(async move {
        lease.await;
        Ok(())
    });
    tasks.spawn(
        network::Network {
            client: client.clone(),
            node_name: config.node_name.clone(),
            cni_conf_dir: config.cni_conf_dir.clone(),
            ipam_dir: config.ipam_dir(),
        }
        .run(),
    );

    let pods = Arc::new(pods::Context {
        client: client.clone(),
        cri,
        events,
        metrics: metrics.clone(),
        node_name: config.node_name.clone(),
        node_ip: config.node_ip,
        runtime_name: version.runtime_name,
        pods_dir: config.pods_dir(),
        pod_log_dir: config.pod_log_dir.clone(),
        cgroup_root: config.cgroup_root.clone(),
        cluster_dns: config.cluster_dns,
        cluster_domain: config.cluster_domain.clone(),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        node_cpu_millis: machine.cpus as i64 * 1000,
        node_memory: machine.memory_bytes as i64,
        timing: config.timing.clone(),
        image_names: Default::default(),
        pods: Default::default(),
    });
    tasks.spawn(pods::run(pods.clone()));
    let addr = SocketAddr::new(config.node_ip, config.kubelet_port);
    tasks.spawn(server::serve(addr, credentials, pods, metrics));

    match tasks.join_next().await {
        Some(Ok(Ok(()))) | None => anyhow::bail!("a part of the agent stopped"),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e).context("a part of the agent panicked"),
    }
}

/// Registers the Node, retrying until the API server takes it.
async fn register(reporter: &node::Reporter) {
    let mut delay = Duration::from_millis(500);
    while let Err(e) = reporter.register().await {
        tracing::warn!("registering the node, retrying in {delay:?}: {e:#}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
