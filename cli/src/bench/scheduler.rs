//! The scheduler benchmark, against an in-process apiserver on loopback:
//! - 1000 pending pods onto 100 fake nodes: the pods exist first, then the
//!   scheduler starts (its watches listing them included) and the clock
//!   stops when its cache shows every pod bound; side by side with the
//!   floor, the same number of bare binding POSTs (round-robin, as many in
//!   flight as the scheduler allows itself) without any scheduling;
//! - a Deployment of 100 replicas with every controller running, from the
//!   create to all 100 pods bound.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use paddock_apiserver::controllers::events::Recorder;
use paddock_apiserver::controllers::informer::Informer;
use paddock_apiserver::controllers::scheduler::{self, BINDS_IN_FLIGHT, Scheduler};
use paddock_apiserver::controllers::{self};
use paddock_apiserver::{Config, Server};
use serde_json::json;
use tokio::task::JoinSet;

#[derive(clap::Args)]
pub struct Args {
    /// Fake nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pending pods per round.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Rounds of the pending-pods benchmark.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Replicas of the Deployment benchmark.
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// Where to write the Markdown report (also printed).
    #[arg(long, default_value = "target/bench/scheduler.md")]
    out: PathBuf,
}

pub async fn run(args: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("paddock-bench-scheduler-{}", std::process::id()));
    let mut config = Config::new(dir.clone());
    config.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.advertise_address = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // A free port: the `kubernetes` Endpoints name the real one.
    config.https_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cluster_cidr = config.cluster_cidr;
    let server = Server::start(config).await?;
    let result = bench(&server, cluster_cidr, &args).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    super::publish(&report, &args.out)
}

async fn bench(server: &Server, cluster_cidr: ipnet::Ipv4Net, args: &Args) -> Result<String> {
    let client = server.client().await?;
    make_nodes(&client, args.nodes).await?;
    let mut pending = Vec::new();
    let mut bare = Vec::new();
    for round in 0..args.rounds {
        let namespace = format!("pending-{round}");
        make_namespace(&client, &namespace).await?;
        make_pods(&client, &namespace, args.pods).await?;
        pending.push(schedule_pending(&client, &namespace, args.pods).await?);
        let namespace = format!("bare-{round}");
        make_namespace(&client, &namespace).await?;
        make_pods(&client, &namespace, args.pods).await?;
        bare.push(bind_round_robin(&client, &namespace, args.nodes).await?);
    }
    let mut all = JoinSet::new();
    all.spawn(controllers::run(
        client.clone(),
        controllers::Config::new(cluster_cidr),
    ));
    make_namespace(&client, "deploy").await?;
    let deployment = deploy(&client, "deploy", args.replicas).await;
    all.abort_all();
    let deployment = deployment?;

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let each = |all: &[Duration]| {
        let rows: Vec<String> = all.iter().map(|d| format!("{:.0}", ms(d))).collect();
        rows.join(", ")
    };
    let (scheduled, floor) = (median(&pending), median(&bare));
    Ok(format!(
        "# Scheduler benchmark\n\n\
         In-process apiserver (SQLite, HTTPS on loopback), {nodes} fake Ready nodes (4 CPU, 8 GiB, 110 pods each).\n\n\
         | what | median of {rounds} | rounds (ms) |\n|---|---|---|\n\
         | {pods} pending pods → {nodes} nodes by the scheduler, start to all bound in its cache | {scheduled:.0} ms ({rate:.0} pods/s) | {each_scheduled} |\n\
         | {pods} bare binding POSTs, round-robin, {in_flight} in flight (the floor) | {floor:.0} ms | {each_floor} |\n\
         | scheduler / floor | {ratio:.2} | |\n\n\
         Deployment of {replicas} replicas with every controller running, create → all pods bound: {dep:.0} ms\n",
        nodes = args.nodes,
        pods = args.pods,
        rounds = args.rounds,
        scheduled = ms(&scheduled),
        rate = args.pods as f64 / scheduled.as_secs_f64(),
        each_scheduled = each(&pending),
        floor = ms(&floor),
        in_flight = BINDS_IN_FLIGHT,
        each_floor = each(&bare),
        ratio = scheduled.as_secs_f64() / floor.as_secs_f64(),
        replicas = args.replicas,
        dep = ms(&deployment),
    ))
}

fn median(all: &[Duration]) -> Duration {
    let mut sorted = all.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

async fn make_nodes(client: &kube::Client, count: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = node_name(i);
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                }))?;
                api.create(&PostParams::default(), &node).await?;
                let status = json!({"status": {
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .context("registering fake nodes")?;
    Ok(())
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

async fn make_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn make_pods(client: &kube::Client, namespace: &str, count: usize) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "p-"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))?;
    stream::iter(0..count)
        .map(|_| {
            let (api, pod) = (api.clone(), pod.clone());
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<Pod>>()
        .await
        .context("creating pending pods")?;
    Ok(())
}

/// Starts a scheduler (and its watches) over existing pending pods and
/// times it until its cache shows all of `namespace`'s pods bound.
async fn schedule_pending(
    client: &kube::Client,
    namespace: &str,
    count: usize,
) -> Result<Duration> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let (pods, watch_pods) =
        Informer::<Pod>::new(Api::all(client.clone()), watcher::Config::default());
    let (nodes, watch_nodes) =
        Informer::<Node>::new(Api::all(client.clone()), watcher::Config::default());
    let (recorder, events) = Recorder::new(client.clone());
    tasks.spawn(watch_pods);
    tasks.spawn(watch_nodes);
    tasks.spawn(events);
    let scheduler = Scheduler::new(client.clone(), pods.clone(), nodes, &recorder);
    tasks.spawn(async move {
        let _ = scheduler.run().await;
    });
    let store = pods.store();
    let elapsed = loop {
        let bound = store
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if bound == count {
            break start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("only {bound} of {count} pods were bound after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tasks.abort_all();
    Ok(elapsed)
}

/// Binds every pod of `namespace` to the nodes in turn, with no scheduling
/// at all, and times the binding POSTs.
async fn bind_round_robin(
    client: &kube::Client,
    namespace: &str,
    nodes: usize,
) -> Result<Duration> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api.list(&ListParams::default()).await?.items;
    let start = Instant::now();
    stream::iter(pods.iter().enumerate())
        .map(|(i, pod)| async move { scheduler::bind(client, pod, &node_name(i % nodes)).await })
        .buffer_unordered(BINDS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}

/// Creates a Deployment and times it until all its pods are bound.
async fn deploy(client: &kube::Client, namespace: &str, replicas: usize) -> Result<Duration> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        },
    }))?;
    let start = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    loop {
        let list = pods.list(&ListParams::default()).await?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if bound >= replicas {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("only {bound} of {replicas} pods were bound after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
