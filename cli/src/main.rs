//! `paddock`: one binary for every part of a Paddock node.

mod agent;
mod bench;
mod controllers;
mod proxy;
mod runtime;
mod server;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "paddock",
    version,
    about = "A lightweight Kubernetes node stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (apiserver, SQLite store, controllers) and, unless
    /// --disable-agent, an agent with the embedded runtime and the proxy.
    Server(Box<server::Args>),
    /// Join a server and run the pods bound to this node.
    Agent(Box<agent::Args>),
    /// Run kube-proxy: Services on this node through iptables or IPVS.
    Proxy(proxy::Args),
    /// Run the CRI runtime on its own socket.
    Runtime(runtime::Args),
    /// Run a benchmark and print its Markdown table.
    Bench(bench::Args),
}

fn main() -> Result<()> {
    // Container monitors and exec helpers are this binary re-executed.
    paddock_runtime::run_helper_if_requested();
    tracing_subscriber::fmt()
        .with_env_filter(
            // libcgroups reports its manager and absent controllers at every
            // use (stats, updates): keep that out of the default log.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,libcgroups=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => block_on(server::run(*args)),
        Command::Agent(args) => block_on(agent::run(*args)),
        Command::Proxy(args) => block_on(proxy::run(args)),
        Command::Runtime(args) => block_on(runtime::run(args)),
        Command::Bench(args) => bench::run(args),
    }
}

fn block_on(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Runtime::new()?.block_on(work)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of every subcommand (unique names and groups),
    /// which otherwise fail only when that subcommand runs.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
