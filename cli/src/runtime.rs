//! `paddock runtime`: the CRI runtime on its own socket.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use paddock_runtime::{Config, Runtime};

#[derive(clap::Args)]
pub struct Args {
    /// The CRI socket to serve.
    #[arg(long, default_value = "unix:///run/paddock/runtime.sock")]
    listen: String,
    /// Where images, sandboxes and containers are kept.
    #[arg(long, default_value = "/var/lib/paddock/runtime")]
    root: PathBuf,
    /// Registry mirrors and credentials, in k3s's registries.yaml format.
    #[arg(long, default_value = "/etc/paddock/registries.yaml")]
    private_registry: PathBuf,
    /// The directory holding the CNI network list.
    #[arg(long, default_value = "/etc/paddock/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for, colon-separated.
    #[arg(long, default_value = "/usr/lib/cni:/opt/cni/bin")]
    cni_bin_dir: String,
    /// The cgroup under which pods without a cgroup parent get theirs.
    #[arg(long, default_value = "/paddock")]
    cgroup_root: String,
    /// Where the Exec/PortForward streaming server listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    stream_address: std::net::SocketAddr,
}

pub async fn run(args: Args) -> Result<()> {
    let Some(socket) = args.listen.strip_prefix("unix://") else {
        bail!("--listen must be a unix:// address, not {:?}", args.listen);
    };
    let config = Config {
        root: args.root,
        registries: Some(args.private_registry),
        cni_conf_dir: args.cni_conf_dir,
        cni_bin_dirs: std::env::split_paths(&args.cni_bin_dir).collect(),
        cgroup_root: args.cgroup_root,
        helper_binary: None,
        stream_address: args.stream_address,
    };
    let runtime = Arc::new(Runtime::open(config).context("opening the runtime")?);
    let listener = paddock_runtime::bind(socket.as_ref())?;
    tracing::info!(socket, "serving CRI");
    paddock_runtime::serve(runtime, listener, shutdown()).await
}

/// SIGTERM or SIGINT.
pub(crate) async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
