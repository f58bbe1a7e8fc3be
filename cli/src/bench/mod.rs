//! `paddock bench`: side-by-side benchmarks, written as Markdown tables.

mod agent;
mod apiserver;
mod proxy;
mod proxy_modes;
mod runtime;
mod scheduler;

use std::path::Path;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Pod create → Ready through the agent, on Paddock's runtime and on
    /// containerd 1.6 + runc side by side, and the agent's memory.
    Agent(agent::Args),
    /// Pod creates/s, a list of 10k pods, watch delivery latency and the
    /// server's memory, against a real `paddock server` on loopback.
    Apiserver(apiserver::Args),
    /// Pod start through CRI against containerd 1.6 + runc, and the
    /// /bin/true container lifecycle against runc and crun (hyperfine).
    Runtime(runtime::Args),
    /// iptables full syncs against a bare iptables-restore of the same
    /// rules, one-service changes at 10k services, and memory; with
    /// --modes iptables,ipvs the modes side by side in UML VMs.
    Proxy(proxy::Args),
    /// 1000 pending pods onto 100 fake nodes, and a 100-replica Deployment
    /// from create to all pods bound, against an in-process apiserver.
    Scheduler(scheduler::Args),
    /// Inside a VM of `bench proxy --modes`: one mode's backend on a
    /// synthetic model, timed.
    #[command(hide = true)]
    ProxyNode(proxy_modes::NodeArgs),
    /// Run one OCI bundle to completion with libcontainer, as `runc run`
    /// does (what the lifecycle benchmark times).
    #[command(hide = true)]
    RunBundle(runtime::RunBundleArgs),
}

/// Runs a benchmark. Bundle runs stay single-threaded (no async runtime):
/// libcontainer forks.
pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::RunBundle(args) => std::process::exit(runtime::run_bundle(args)?),
        What::Proxy(args) => proxy::run(args),
        What::ProxyNode(args) => proxy_modes::node::run(args),
        What::Agent(args) => agent::run(args),
        What::Apiserver(args) => tokio::runtime::Runtime::new()?.block_on(apiserver::run(args)),
        What::Runtime(args) => tokio::runtime::Runtime::new()?.block_on(runtime::run(args)),
        What::Scheduler(args) => tokio::runtime::Runtime::new()?.block_on(scheduler::run(args)),
    }
}

/// Prints a benchmark's Markdown report and writes it to `out`.
fn publish(report: &str, out: &Path) -> Result<()> {
    print!("{report}");
    if !report.ends_with('\n') {
        println!();
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, report).with_context(|| format!("writing {}", out.display()))
}
