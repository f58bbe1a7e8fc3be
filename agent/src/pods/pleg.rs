//! The pod lifecycle event generator: relists the runtime's sandboxes and
//! containers every period (neither runtime streams container events to
//! us) and reports which pods' runtime state changed, so their workers
//! look again within a second of a container exiting.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use tokio::sync::mpsc;

use super::labels;
use crate::cri::Cri;
use crate::metrics::Metrics;

/// Added to container states so they never equal a sandbox state.
const CONTAINER: i32 = 100;

/// One relist's news.
pub struct Relist {
    /// Every pod the runtime has something of.
    pub all: HashSet<String>,
    /// Pods whose sandboxes or containers changed since the last relist.
    pub changed: HashSet<String>,
}

pub async fn run(cri: Cri, period: Duration, metrics: Metrics, tx: mpsc::Sender<Relist>) {
    let mut previous: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let current = match snapshot(&cri).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!("relisting the runtime: {e:#}");
                continue;
            }
        };
        metrics
            .relist_duration
            .observe(started.elapsed().as_secs_f64());
        let states = current.values().flatten().map(|(_, state)| *state);
        let ready = cri::PodSandboxState::SandboxReady as i32;
        let running = CONTAINER + cri::ContainerState::ContainerRunning as i32;
        metrics
            .running_pods
            .set(states.clone().filter(|s| *s == ready).count() as i64);
        metrics
            .running_containers
            .set(states.filter(|s| *s == running).count() as i64);
        let changed = current
            .iter()
            .filter(|(uid, state)| previous.get(*uid) != Some(state))
            .map(|(uid, _)| uid.clone())
            .chain(
                previous
                    .keys()
                    .filter(|uid| !current.contains_key(*uid))
                    .cloned(),
            )
            .collect();
        let relist = Relist {
            all: current.keys().cloned().collect(),
            changed,
        };
        previous = current;
        if tx.send(relist).await.is_err() {
            return;
        }
    }
}

/// Pod uid → its sandboxes' and containers' (id, state), sorted.
async fn snapshot(cri: &Cri) -> anyhow::Result<HashMap<String, Vec<(String, i32)>>> {
    let mut pods: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    for sandbox in cri.list_sandboxes(HashMap::new()).await? {
        if let Some(uid) = sandbox.labels.get(labels::POD_UID) {
            pods.entry(uid.clone())
                .or_default()
                .push((sandbox.id, sandbox.state));
        }
    }
    for container in cri.list_containers(HashMap::new()).await? {
        if let Some(uid) = container.labels.get(labels::POD_UID) {
            pods.entry(uid.clone())
                .or_default()
                .push((container.id, CONTAINER + container.state));
        }
    }
    for state in pods.values_mut() {
        state.sort();
    }
    Ok(pods)
}
