//! `paddock agent`: join a server and run the pods bound to this node,
//! through the embedded runtime or another CRI runtime (containerd). Flags
//! follow k3s and the kubelet.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Taint;
use paddock_agent::{Config, Timing};

#[derive(clap::Args)]
pub struct Args {
    /// The server to join, `https://HOST:6443`.
    #[arg(long, env = "PADDOCK_URL")]
    server: String,
    /// The join token, as the server wrote it to `<data-dir>/server/token`.
    #[arg(long, env = "PADDOCK_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the join token.
    #[arg(long, env = "PADDOCK_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// This node's IP address (default: the one that reaches the server).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Where the agent (and an embedded runtime) keep their state.
    #[arg(long, default_value = "/var/lib/paddock")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

/// The node's flags, shared by `paddock agent` and `paddock server`.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// The Node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// An external CRI runtime, e.g. `unix:///run/containerd/containerd.sock`;
    /// without it the agent runs Paddock's runtime in process.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Where the embedded runtime serves CRI.
    #[arg(long, default_value = "unix:///run/paddock/runtime.sock")]
    runtime_socket: String,
    /// Registry mirrors and credentials for the embedded runtime (k3s's
    /// registries.yaml).
    #[arg(long, default_value = "/etc/paddock/registries.yaml")]
    private_registry: PathBuf,
    /// Where the pod network's CNI config is written (and read by the runtime).
    #[arg(long, default_value = "/etc/paddock/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for, colon-separated.
    #[arg(long, default_value = "/usr/lib/cni:/opt/cni/bin")]
    cni_bin_dir: String,
    /// The cgroup under which pods get theirs.
    #[arg(long, default_value = "/paddock")]
    cgroup_root: String,
    /// Where container logs are written.
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_dir: PathBuf,
    /// The kubelet API's port.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The cluster DNS service's IP for pods' resolv.conf (the node's
    /// resolv.conf without it).
    #[arg(long)]
    cluster_dns: Option<IpAddr>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// A label for the Node, `KEY=VALUE` (repeatable).
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// A taint the Node is registered with, `KEY[=VALUE]:EFFECT`
    /// (repeatable).
    #[arg(long = "node-taint", value_parser = paddock_agent::config::parse_taint)]
    node_taints: Vec<Taint>,
    /// The most pods this node runs.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// A kube-proxy flag for the node's proxy, `KEY=VALUE` (repeatable),
    /// e.g. `proxy-mode=ipvs`.
    #[arg(long = "kube-proxy-arg")]
    kube_proxy_args: Vec<String>,
    /// Run no proxy on this node.
    #[arg(long)]
    disable_kube_proxy: bool,
}

pub async fn run(args: Args) -> Result<()> {
    let token = match (args.token, &args.token_file) {
        (Some(token), _) => token,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("reading --token-file {}", file.display()))?,
        (None, None) => bail!("--token or --token-file is needed to join a server"),
    };
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => ip_towards(&args.server)?,
    };
    let agent = start(args.server, token, node_ip, args.data_dir, args.node, None)?;
    tokio::select! {
        result = agent => result,
        () = crate::runtime::shutdown() => Ok(()),
    }
}

/// The agent, its proxy (unless `--disable-kube-proxy`) and its embedded
/// runtime (unless another one is named), as a future that runs until one
/// of them fails or it is dropped. The proxy masquerades traffic to cluster
/// IPs from outside `cluster_cidr`, when known.
pub fn start(
    server: String,
    token: String,
    node_ip: IpAddr,
    data_dir: PathBuf,
    node: NodeArgs,
    cluster_cidr: Option<IpNet>,
) -> Result<impl Future<Output = Result<()>> + use<>> {
    let embedded = node.container_runtime_endpoint.is_none();
    let endpoint = node
        .container_runtime_endpoint
        .clone()
        .unwrap_or_else(|| node.runtime_socket.clone());
    let config = Config {
        server,
        token,
        node_name: match node.node_name.clone() {
            Some(name) => name,
            None => hostname()?,
        },
        node_ip,
        runtime_endpoint: paddock_agent::cri::socket_path(&endpoint)?,
        cni_conf_dir: node.cni_conf_dir.clone(),
        pod_log_dir: node.pod_log_dir.clone(),
        cgroup_root: node.cgroup_root.clone(),
        kubelet_port: node.kubelet_port,
        cluster_dns: node.cluster_dns,
        cluster_domain: node.cluster_domain.clone(),
        node_labels: labels(&node.node_labels)?,
        node_taints: node.node_taints.clone(),
        max_pods: node.max_pods,
        timing: Timing::default(),
        data_dir,
    };
    let proxy = if node.disable_kube_proxy {
        None
    } else {
        Some(proxy_config(&config, &node, cluster_cidr)?)
    };
    let runtime = if embedded {
        Some(embedded_runtime(&config, &node)?)
    } else {
        None
    };
    Ok(async move {
        let runtime = async {
            match runtime {
                Some(runtime) => runtime.await,
                None => std::future::pending().await,
            }
        };
        let node = async {
            let joined = paddock_agent::join(&config).await?;
            let proxy = async {
                match proxy {
                    Some(proxy) => {
                        paddock_proxy::run(proxy, joined.client.clone(), std::future::pending())
                            .await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = paddock_agent::run(config, joined.clone()) => result,
                result = proxy => result.context("the proxy stopped"),
            }
        };
        tokio::select! {
            result = node => result,
            result = runtime => result.context("the embedded runtime stopped"),
        }
    })
}

/// The node's proxy: upstream's defaults for this node, then
/// `--kube-proxy-arg`s.
fn proxy_config(
    config: &Config,
    node: &NodeArgs,
    cluster_cidr: Option<IpNet>,
) -> Result<paddock_proxy::Config> {
    let mut proxy = paddock_proxy::Config::new(&config.node_name, config.node_ip);
    proxy.cluster_cidr = cluster_cidr;
    for arg in &node.kube_proxy_args {
        proxy.apply_kube_proxy_arg(arg)?;
    }
    Ok(proxy)
}

/// Paddock's runtime, serving CRI on the agent's socket.
fn embedded_runtime(
    config: &Config,
    node: &NodeArgs,
) -> Result<impl Future<Output = Result<()>> + use<>> {
    let runtime_config = paddock_runtime::Config {
        root: config.data_dir.join("runtime"),
        registries: Some(node.private_registry.clone()),
        cni_conf_dir: node.cni_conf_dir.clone(),
        cni_bin_dirs: std::env::split_paths(&node.cni_bin_dir).collect(),
        cgroup_root: node.cgroup_root.clone(),
        ..Default::default()
    };
    let runtime =
        Arc::new(paddock_runtime::Runtime::open(runtime_config).context("opening the runtime")?);
    let listener = paddock_runtime::bind(&config.runtime_endpoint)?;
    tracing::info!(socket = %config.runtime_endpoint.display(), "serving CRI (embedded runtime)");
    Ok(paddock_runtime::serve(
        runtime,
        listener,
        std::future::pending(),
    ))
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--node-label {pair:?} is not KEY=VALUE"),
        })
        .collect()
}

/// The host name, lowercased, as a node name.
fn hostname() -> Result<String> {
    let name = nix::unistd::gethostname().context("reading the host name")?;
    Ok(name.to_string_lossy().to_lowercase())
}

/// The local address the kernel would use to reach `server`.
fn ip_towards(server: &str) -> Result<IpAddr> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    let host = url
        .host()
        .with_context(|| format!("--server {server:?} has no host"))?
        .trim_matches(['[', ']']);
    let socket = UdpSocket::bind(("0.0.0.0", 0)).context("finding this node's IP")?;
    socket
        .connect((host, url.port_u16().unwrap_or(443)))
        .with_context(|| format!("finding the address that reaches {server}; pass --node-ip"))?;
    Ok(socket.local_addr()?.ip())
}
