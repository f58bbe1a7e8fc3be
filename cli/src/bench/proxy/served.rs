//! `paddock proxy` itself at N services, as a node runs it: a real
//! `paddock server` holding N Services with an EndpointSlice of E endpoints
//! each, and the proxy binary in a fresh network namespace (reaching the
//! server through a relay on its loopback). Measured: the time from its
//! start to its first sync done (list, render, restore), and its resident
//! memory then, with the watch caches and the tracker included.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use paddock_testkit::netns::NetNs;
use paddock_testkit::process::Guard;
use paddock_testkit::relay::Relay;
use paddock_testkit::server::Server;
use paddock_testkit::{unique_name, wait};
use serde_json::json;

/// What the proxy binary costs at `services`.
pub struct Served {
    pub services: usize,
    /// From spawning `paddock proxy` to its first sync done.
    pub first_sync: Duration,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// Concurrent creates while filling the server.
const WRITERS: usize = 32;

pub fn measure(services: usize, endpoints: usize) -> Result<Served> {
    let exe = std::env::current_exe()?;
    let server = Server::start(&exe, &[])?;
    tokio::runtime::Runtime::new()?
        .block_on(fill(&server.kubeconfig(), services, endpoints))
        .context("filling the server")?;

    let ns = NetNs::create(&unique_name("pbx"))?;
    // The hint a kubelet on an iptables-legacy host leaves: the proxy
    // detects legacy, as the other measurements use (iptables-nft takes
    // minutes for 10k services at once).
    ns.run(
        "iptables-legacy",
        &["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"],
    )?;
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    let _relay = Relay::start(&ns, api, api)?;
    let log_path = server.data_dir().join("proxy.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = ns.command(exe.to_str().context("the executable's path")?);
    cmd.arg("proxy")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["--proxy-mode", "iptables", "--node-ip", "192.168.56.10"])
        .args(["--hostname-override", "bench-node"])
        .args(["--cluster-cidr", "10.244.0.0/16"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let proxy = Guard::spawn("paddock proxy", cmd)?;
    wait::until(
        "the proxy's first sync",
        Duration::from_secs(600),
        Duration::from_millis(50),
        || Ok((synced_services(&read_log(&log_path)) >= services).then_some(())),
    )
    .with_context(|| format!("the proxy's log:\n{}", read_log(&log_path)))?;
    let first_sync = started.elapsed();
    let (rss_kib, peak_rss_kib) = memory(proxy.pid())?;
    drop(proxy);
    Ok(Served {
        services,
        first_sync,
        rss_kib,
        peak_rss_kib,
    })
}

/// Creates Services `svc-0..services`, each with one EndpointSlice of
/// `endpoints` ready endpoints on other nodes.
async fn fill(kubeconfig: &Path, services: usize, endpoints: usize) -> Result<()> {
    let yaml = std::fs::read_to_string(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let service_api: Api<Service> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client, "default");
    futures::stream::iter(0..services)
        .map(|i| {
            let (service_api, slice_api) = (service_api.clone(), slice_api.clone());
            async move {
                service_api
                    .create(&PostParams::default(), &service(i))
                    .await?;
                slice_api
                    .create(&PostParams::default(), &slice(i, endpoints))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": format!("svc-{i}")},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("a valid service")
}

fn slice(i: usize, endpoints: usize) -> EndpointSlice {
    let addresses: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = (i * endpoints + e) as u32 + 1;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + n);
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": "elsewhere"})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("svc-{i}-1"),
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": addresses,
    }))
    .expect("a valid EndpointSlice")
}

/// The most service ports one sync logged (`synced ... services=N`): the
/// first sync has them all (the server's own `kubernetes` service too).
fn synced_services(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(" synced "))
        .filter_map(|line| {
            line.split_once(" services=")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// The proxy's log (plain: it runs with `NO_COLOR`).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Current and peak resident memory of `pid`, in KiB.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
