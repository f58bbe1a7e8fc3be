//! The apiserver benchmark: a real `paddock server --disable-agent` on
//! loopback, driven over HTTPS with the admin identity:
//! - pod creates/s, by one client and by several at once (concurrent
//!   writers share a commit, and so an fsync);
//! - a full list of N pods (the JSON kubectl and informers fetch);
//! - watch delivery: the time from sending an update to its event arriving
//!   on an open watch, p50 and p99;
//! - the server's resident memory idle and holding N pods.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use paddock_testkit::server::Server;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Pods created by the timed create runs.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// Concurrent clients in the concurrent create run.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Pods in the store for the list and memory measurements.
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Full lists timed.
    #[arg(long, default_value_t = 5)]
    lists: usize,
    /// Updates timed through the watch.
    #[arg(long, default_value_t = 300)]
    updates: usize,
    /// Where to write the Markdown report (also printed).
    #[arg(long, default_value = "target/bench/apiserver.md")]
    out: PathBuf,
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
    }))
    .expect("a valid pod")
}

/// Resident memory of `pid` in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

/// Creates pods `prefix-0..n` with `clients` at once; returns creates/s.
async fn create(pods: &Api<Pod>, prefix: &str, n: usize, clients: usize) -> Result<f64> {
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            let name = format!("{prefix}-{i}");
            async move { pods.create(&PostParams::default(), &pod(&name)).await }
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<_>>()
        .await
        .context("creating pods")?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Sends `n` label updates one after another and times each until its
/// MODIFIED event arrives on a watch opened before.
async fn watch_latency(pods: &Api<Pod>, n: usize) -> Result<Vec<Duration>> {
    pods.create(&PostParams::default(), &pod("watched")).await?;
    let rv = pods
        .get("watched")
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let params = WatchParams::default().fields("metadata.name=watched");
    let mut events = pods.watch(&params, &rv).await?.boxed();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let patch = Patch::Merge(json!({"metadata": {"labels": {"round": i.to_string()}}}));
        let sent = Instant::now();
        pods.patch("watched", &PatchParams::default(), &patch)
            .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
                Ok(Ok(Some(WatchEvent::Modified(p))))
                    if p.metadata.labels.as_ref().and_then(|l| l.get("round"))
                        == Some(&i.to_string()) =>
                {
                    latencies.push(sent.elapsed());
                    break;
                }
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => anyhow::bail!("the watch ended"),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => anyhow::bail!("no event for update {i} within 10s"),
            }
        }
    }
    latencies.sort();
    Ok(latencies)
}

async fn measure(args: &Args) -> Result<String> {
    let server = Server::start(&std::env::current_exe()?, &[])?;
    let pid = server.pid().context("the server's pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid)?;
    let yaml = std::fs::read_to_string(server.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let sequential_n = (args.creates / 5).max(1);
    let sequential = create(&pods, "seq", sequential_n, 1).await?;
    let concurrent = create(&pods, "con", args.creates, args.clients).await?;
    let filled = sequential_n + args.creates;
    if args.pods > filled {
        create(&pods, "fill", args.pods - filled, 32).await?;
    }

    let request = http::Request::get("/api/v1/namespaces/default/pods").body(Vec::new())?;
    let mut lists = Vec::new();
    let mut bytes = 0;
    for _ in 0..args.lists {
        let start = Instant::now();
        let body = client.request_text(request.clone()).await?;
        lists.push(start.elapsed());
        bytes = body.len();
        let items = serde_json::from_str::<serde_json::Value>(&body)?["items"]
            .as_array()
            .map_or(0, Vec::len);
        ensure!(
            items >= args.pods,
            "listed {items} pods, expected {}",
            args.pods
        );
    }
    lists.sort();
    let full = rss_mib(pid)?;
    let latencies = watch_latency(&pods, args.updates).await?;

    let mut report = String::new();
    writeln!(report, "# apiserver benchmark\n")?;
    writeln!(
        report,
        "`paddock server --disable-agent` on loopback (SQLite WAL, synchronous=FULL), HTTPS with the admin client certificate, kube-rs client; {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    writeln!(report, "| measurement | result | goal |")?;
    writeln!(report, "|---|---|---|")?;
    writeln!(
        report,
        "| pod creates/s, {} clients ({} pods) | {concurrent:.0} | ≥ 500 |",
        args.clients, args.creates
    )?;
    writeln!(
        report,
        "| pod creates/s, 1 client ({sequential_n} pods) | {sequential:.0} | |"
    )?;
    writeln!(
        report,
        "| list of {} pods ({:.1} MiB JSON), median of {} | {} | ≤ 100 ms |",
        args.pods,
        bytes as f64 / 1048576.0,
        args.lists,
        ms(percentile(&lists, 0.5))
    )?;
    writeln!(
        report,
        "| watch delivery p50 ({} updates) | {} | |",
        args.updates,
        ms(percentile(&latencies, 0.5))
    )?;
    writeln!(
        report,
        "| watch delivery p99 | {} | ≤ 10 ms |",
        ms(percentile(&latencies, 0.99))
    )?;
    writeln!(report, "| server RSS idle | {idle:.1} MiB | ≤ 40 MB |")?;
    writeln!(
        report,
        "| server RSS with {} pods | {full:.1} MiB | |",
        args.pods
    )?;
    writeln!(
        report,
        "\nWatch delivery is timed from sending a PATCH to its MODIFIED event arriving on an open watch: it includes the commit's fsync."
    )?;
    drop(server);
    Ok(report)
}

pub async fn run(args: Args) -> Result<()> {
    let report = measure(&args).await?;
    super::publish(&report, &args.out)
}
