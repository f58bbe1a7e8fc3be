//! `paddock server`: the control plane. Flags follow k3s where k3s has one.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use paddock_apiserver::{Compaction, Config, Server};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct Args {
    /// Where the server keeps its state (`server/` below it).
    #[arg(long, default_value = "/var/lib/paddock")]
    data_dir: PathBuf,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/paddock/kubeconfig.yaml")]
    write_kubeconfig: PathBuf,
    /// The HTTPS port of the API.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// The address the API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address agents and Services reach the API at (default: --node-ip).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// This node's IP address (default: the advertise address).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The pod network; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: Ipv4Net,
    /// The network ClusterIPs come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: Ipv4Net,
    /// The ports NodePorts come from.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: RangeInclusive<u16>,
    /// The join token's secret, or a whole token (default: made once and kept).
    #[arg(long, env = "PADDOCK_TOKEN")]
    token: Option<String>,
    /// Run only the control plane, no agent on this node.
    #[arg(long)]
    disable_agent: bool,
    /// Seconds between compactions of the revision log.
    #[arg(long, default_value_t = 60, hide = true)]
    compact_interval_seconds: u64,
    /// Seconds of history the revision log keeps for watches.
    #[arg(long, default_value_t = 300, hide = true)]
    compact_retention_seconds: u64,
    #[command(flatten)]
    controllers: crate::controllers::Flags,
    /// This node's agent, unless --disable-agent.
    #[command(flatten)]
    node: crate::agent::NodeArgs,
}

fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("{s:?} is not a port range like 30000-32767"))?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    if lo == 0 || lo > hi {
        bail!("{s:?} is not a port range like 30000-32767");
    }
    Ok(lo..=hi)
}

pub async fn run(args: Args) -> Result<()> {
    let mut config = Config::new(args.data_dir);
    config.write_kubeconfig = Some(args.write_kubeconfig);
    config.https_port = args.https_listen_port;
    config.bind_address = args.bind_address;
    config.advertise_address = args.advertise_address;
    config.node_ip = args.node_ip;
    config.cluster_cidr = args.cluster_cidr;
    config.service_cidr = args.service_cidr;
    config.node_port_range = args.service_node_port_range;
    config.token = args.token;
    config.disable_agent = args.disable_agent;
    config.compaction = Compaction {
        interval: Duration::from_secs(args.compact_interval_seconds.max(1)),
        retention: Duration::from_secs(args.compact_retention_seconds),
    };
    config.admission = args.controllers.admission();
    let controllers = args.controllers.config(config.cluster_cidr);
    let cluster_cidr = config.cluster_cidr;
    let data_dir = config.data_dir.clone();
    let server = Server::start(config).await?;
    let controllers = tokio::spawn(crate::controllers::run(server.client().await?, controllers));
    // This node's agent, its proxy and its embedded runtime, joining the
    // server in this process like any other node.
    let agent = if args.disable_agent {
        None
    } else {
        Some(crate::agent::start(
            server.local_url(),
            server.join_token().to_string(),
            args.node_ip.unwrap_or(server.advertise_address()),
            data_dir,
            args.node,
            Some(cluster_cidr.into()),
        )?)
    };
    let agent = async {
        match agent {
            Some(agent) => agent.await.context("this node's agent stopped"),
            None => std::future::pending().await,
        }
    };
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        result = agent => result,
    };
    tracing::info!("shutting down");
    controllers.abort();
    server.shutdown().await;
    result
}
