//! An acknowledged write survives `kill -9`: pods are created by several
//! clients at once, the server is killed in the middle, and after a restart
//! every create that got 201 is listed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use paddock_testkit::server::Server;
use serde_json::json;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");
const CREATES: usize = 500;
const CLIENTS: usize = 8;
/// The server is killed once this many creates were acknowledged.
const KILL_AFTER: usize = 200;

async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let yaml = std::fs::read_to_string(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml)?,
        &Default::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn pod(name: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }))
    .expect("a valid pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let server = Arc::new(Mutex::new(Server::start(Path::new(PADDOCK), &[])?));
    let kubeconfig = server
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .kubeconfig();
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client(&kubeconfig).await?, "default");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let results = futures::stream::iter(0..CREATES)
        .map(|i| {
            let (pods, acked, server) = (pods.clone(), acked.clone(), server.clone());
            async move {
                let name = format!("p{i:03}");
                if pods
                    .create(&PostParams::default(), &pod(&name))
                    .await
                    .is_ok()
                {
                    let mut acked = acked.lock().expect("acked");
                    acked.insert(name);
                    if acked.len() == KILL_AFTER {
                        server.lock().expect("server").kill9().expect("kill -9");
                    }
                }
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>();
    results.await;
    let acked = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    ensure!(
        acked.len() >= KILL_AFTER && acked.len() < CREATES,
        "{} acknowledged: the kill did not land mid-run",
        acked.len()
    );

    server
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .restart()?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client(&kubeconfig).await?, "default");
    let listed: BTreeSet<String> = pods
        .list(&ListParams::default())
        .await
        .context("listing after the restart")?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let lost: Vec<_> = acked.difference(&listed).collect();
    ensure!(
        lost.is_empty(),
        "acknowledged creates lost after kill -9: {lost:?}"
    );
    // The store keeps working after recovery.
    pods.create(&PostParams::default(), &pod("after-restart"))
        .await?;
    Ok(())
}
