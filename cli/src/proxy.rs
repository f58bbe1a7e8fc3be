//! `paddock proxy`: kube-proxy for one node.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;
use kube::config::{KubeConfigOptions, Kubeconfig};
use paddock_proxy::config::{parse_bind_address, parse_duration};
use paddock_proxy::{Config, Mode};

#[derive(clap::Args)]
pub struct Args {
    /// Kubeconfig to reach the API server with (default: in-cluster or
    /// $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// How services are implemented: iptables or ipvs.
    #[arg(long, default_value = "iptables")]
    proxy_mode: Mode,
    /// How IPVS picks a real server: rr (round robin), lc (least
    /// connections), wrr (weighted round robin) or sh (source hashing).
    #[arg(long, default_value = "rr")]
    ipvs_scheduler: paddock_proxy::ipvs::netlink::Scheduler,
    /// This node's IP; its family is the family of the services proxied.
    #[arg(long)]
    node_ip: IpAddr,
    /// This node's name, if not the hostname (endpoints on it are local).
    #[arg(long)]
    hostname_override: Option<String>,
    /// Minimum time between two syncs (Go duration: 1s, 500ms, 1m).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_sync_period: Duration,
    /// Sync at least this often, and check the rules are still there.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: Duration,
    /// Masquerade all traffic to cluster IPs.
    #[arg(long)]
    masquerade_all: bool,
    /// The pods' CIDR: traffic from outside it to cluster IPs is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<IpNet>,
    /// Where to serve /healthz ("" to not serve it).
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: String,
    /// Where to serve /metrics ("" to not serve it).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
}

pub async fn run(args: Args) -> Result<()> {
    let node_name = match args.hostname_override {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .into_owned(),
    }
    .trim()
    .to_lowercase();
    let mut config = Config::new(&node_name, args.node_ip);
    config.mode = args.proxy_mode;
    config.ipvs_scheduler = args.ipvs_scheduler;
    config.cluster_cidr = args.cluster_cidr;
    config.masquerade_all = args.masquerade_all;
    config.min_sync_period = args.min_sync_period;
    config.sync_period = args.sync_period;
    config.healthz_bind_address = parse_bind_address(&args.healthz_bind_address, 10256)?;
    config.metrics_bind_address = parse_bind_address(&args.metrics_bind_address, 10249)?;

    let kube_config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig, and none found")?,
    };
    let client = kube::Client::try_from(kube_config).context("making the API client")?;
    tracing::info!(node = %node_name, node_ip = %args.node_ip, "starting the proxy");
    paddock_proxy::run(config, client, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping; the rules stay in place");
}
