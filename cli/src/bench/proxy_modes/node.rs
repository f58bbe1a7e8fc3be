//! Inside a benchmark VM: the proxy's backend of one mode, made as
//! `paddock proxy` makes it, driven from a synthetic model. It syncs the
//! model in full, then times one-service changes, and prints `progress …`
//! lines and, last, one `result {json}` line. The rules stay in the kernel
//! after it exits, for the traffic the host sends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_proxy::Mode;
use paddock_proxy::iptables::{Flavor, Iptables, names};
use paddock_proxy::model::{Endpoint, Model, Protocol, Service, ServicePort, ServicePortName};
use serde_json::json;

use crate::bench::proxy::cpu_seconds;

/// The VM's address; the proxy runs there.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 10);
/// The node port of the service measured.
pub const NODE_PORT: u16 = 30080;
/// The pods' CIDR: traffic from elsewhere (the client) is masqueraded.
const CLUSTER_CIDR: &str = "10.128.0.0/9";

#[derive(clap::Args)]
pub struct NodeArgs {
    #[arg(long)]
    mode: Mode,
    #[arg(long)]
    services: usize,
    #[arg(long)]
    endpoints: usize,
    #[arg(long)]
    changes: usize,
    /// The endpoints of the service measured, the one matched last.
    #[arg(long, value_delimiter = ',')]
    backends: Vec<SocketAddr>,
}

/// The cluster IP of service `index`; the last one is the service measured.
pub fn cluster_ip(index: usize) -> Ipv4Addr {
    nth_address(Ipv4Addr::new(10, 96, 0, 0), index)
}

fn nth_address(base: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n as u32 + 1)
}

/// Service names sort in index order, and so do iptables mode's
/// KUBE-SERVICES rules: the last service is matched last.
fn name(index: usize) -> ServicePortName {
    ServicePortName::new("bench", &format!("svc-{index:05}"), "http")
}

/// `services` ClusterIP services with `endpoints` endpoints each (nowhere);
/// the last one also has a node port and `backends` as its endpoints.
fn model(services: usize, endpoints: usize, backends: &[SocketAddr]) -> Model {
    (0..services)
        .map(|i| {
            let mut port =
                ServicePort::cluster_ip(name(i), Protocol::Tcp, cluster_ip(i).into(), 80);
            let eps = if i + 1 == services {
                port.node_port = Some(NODE_PORT);
                backends
                    .iter()
                    .map(|b| Endpoint::ready(b.ip(), b.port()))
                    .collect()
            } else {
                (0..endpoints)
                    .map(|e| {
                        let ip = nth_address(Ipv4Addr::new(10, 128, 0, 0), i * endpoints + e);
                        Endpoint::ready(ip.into(), 8080)
                    })
                    .collect()
            };
            Service::new(port, eps)
        })
        .collect()
}

pub fn run(args: NodeArgs) -> Result<()> {
    ensure!(
        args.changes < args.services,
        "{} changes need more than {} services",
        args.changes,
        args.services
    );
    let mut model = model(args.services, args.endpoints, &args.backends);
    let mut config = paddock_proxy::Config::new("node-10", IpAddr::V4(NODE_IP));
    config.mode = args.mode;
    config.cluster_cidr = Some(CLUSTER_CIDR.parse()?);
    let mut backend = paddock_proxy::backend(&config)?;

    println!("progress full sync");
    let cpu = cpu_seconds();
    let started = Instant::now();
    let report = backend.sync(&model).context("the full sync")?;
    let full_sync = started.elapsed();
    ensure!(report.full, "the first sync was not a full one: {report:?}");

    let mut changes = Vec::with_capacity(args.changes);
    for n in 0..args.changes {
        println!("progress one-service change {}/{}", n + 1, args.changes);
        // Service n swaps its first endpoint for a new address.
        let old = model.get(&name(n)).context("a changed service")?;
        let mut eps = old.endpoints.to_vec();
        eps[0] = Endpoint::ready(nth_address(Ipv4Addr::new(10, 200, 0, 0), n).into(), 8080);
        model.insert(Service::new((*old.port).clone(), eps));
        let started = Instant::now();
        let report = backend.sync(&model).context("a one-service change")?;
        changes.push(started.elapsed());
        ensure!(
            !report.full && report.services_changed == 1,
            "not a one-service partial sync: {report:?}"
        );
    }
    let cpu = cpu_seconds() - cpu;
    if args.mode == Mode::Iptables {
        ensure_matched_last(cluster_ip(args.services - 1))?;
    }
    let millis = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "result {}",
        json!({
            "full_sync_ms": millis(&full_sync),
            "change_ms": changes.iter().map(millis).collect::<Vec<_>>(),
            "cpu_seconds": cpu,
            "peak_rss_kib": peak_rss_kib()?,
        })
    );
    Ok(())
}

/// Checks that `ip`'s rule is the last service rule of KUBE-SERVICES.
fn ensure_matched_last(ip: Ipv4Addr) -> Result<()> {
    let saved = Iptables::new(Flavor::detect()?).save("nat")?;
    let prefix = format!("-A {} ", names::SERVICES);
    let last = saved
        .lines()
        .rev()
        .find(|l| l.starts_with(&prefix) && l.contains(" -j KUBE-SVC-"))
        .context("no service rules in KUBE-SERVICES")?;
    ensure!(
        last.contains(&format!("-d {ip}/32 ")),
        "the service measured ({ip}) is not matched last: {last}"
    );
    Ok(())
}

/// This process's peak resident memory.
fn peak_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
