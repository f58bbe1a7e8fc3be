//! The probes of one pod: a task per running container instance and probe
//! kind, keeping upstream's semantics — startup first (liveness and
//! readiness wait for it), thresholds of consecutive results, readiness
//! failing until it first succeeds, liveness and startup failures marking
//! the instance for a kill. Results wake the pod's worker.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::plan::KillReason;
use super::probe::{self, Target};
use super::state::Instance;
use crate::cri::Cri;
use crate::events::{Kind as EventKind, Recorder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What the probes found, by instance id.
#[derive(Debug, Default)]
pub struct Results {
    pub ready: HashSet<String>,
    pub started: HashSet<String>,
    pub unhealthy: HashMap<String, KillReason>,
}

pub struct Probes {
    cri: Cri,
    events: Recorder,
    results: Arc<Mutex<Results>>,
    wake: Arc<Notify>,
    tasks: HashMap<(String, Kind), JoinHandle<()>>,
}

/// What a probe task needs to know about its instance.
struct Probed {
    id: String,
    container: Container,
    pod_ip: String,
    reference: ObjectReference,
    started_at: std::time::SystemTime,
}

impl Probes {
    pub fn new(cri: Cri, events: Recorder, wake: Arc<Notify>) -> Probes {
        Probes {
            cri,
            events,
            results: Arc::default(),
            wake,
            tasks: HashMap::new(),
        }
    }

    /// A copy of the current results.
    pub fn results(&self) -> Results {
        let r = self.results.lock().expect("probe results lock");
        Results {
            ready: r.ready.clone(),
            started: r.started.clone(),
            unhealthy: r.unhealthy.clone(),
        }
    }

    /// Probes the `running` instances of `containers` (each with its
    /// reference for events); forgets the others. `was_ready` seeds
    /// readiness for instances found running after an agent restart.
    pub fn sync<'a>(
        &mut self,
        running: impl Iterator<Item = (&'a Instance, &'a Container, ObjectReference)>,
        pod_ip: &str,
        was_ready: impl Fn(&str) -> bool,
    ) {
        let mut live = HashSet::new();
        for (instance, container, reference) in running {
            live.insert(instance.id.clone());
            let probes = [
                (Kind::Startup, container.startup_probe.as_ref()),
                (Kind::Liveness, container.liveness_probe.as_ref()),
                (Kind::Readiness, container.readiness_probe.as_ref()),
            ];
            {
                let mut results = self.results.lock().expect("probe results lock");
                if container.startup_probe.is_none() {
                    results.started.insert(instance.id.clone());
                }
                let fresh = !self.tasks.keys().any(|(id, _)| *id == instance.id);
                // Without a probe a running container is ready; with one, an
                // instance found running after an agent restart keeps the
                // readiness the API shows until its probe says otherwise.
                if container.readiness_probe.is_none() || (fresh && was_ready(&instance.id)) {
                    results.ready.insert(instance.id.clone());
                }
            }
            for (kind, probe) in probes {
                let Some(probe) = probe else { continue };
                let key = (instance.id.clone(), kind);
                if self.tasks.contains_key(&key) {
                    continue;
                }
                let probed = Probed {
                    id: instance.id.clone(),
                    container: container.clone(),
                    pod_ip: pod_ip.to_string(),
                    reference: reference.clone(),
                    started_at: instance.started(),
                };
                let task = tokio::spawn(probe_loop(
                    kind,
                    probe.clone(),
                    probed,
                    self.cri.clone(),
                    self.events.clone(),
                    self.results.clone(),
                    self.wake.clone(),
                ));
                self.tasks.insert(key, task);
            }
        }
        self.tasks.retain(|(id, _), task| {
            let keep = live.contains(id);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut results = self.results.lock().expect("probe results lock");
        results.ready.retain(|id| live.contains(id));
        results.started.retain(|id| live.contains(id));
        results.unhealthy.retain(|id, _| live.contains(id));
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

async fn probe_loop(
    kind: Kind,
    probe: Probe,
    probed: Probed,
    cri: Cri,
    events: Recorder,
    results: Arc<Mutex<Results>>,
    wake: Arc<Notify>,
) {
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let since_start = probed.started_at.elapsed().unwrap_or_default();
    tokio::time::sleep(initial.saturating_sub(since_start)).await;
    let (mut successes, mut failures) = (0, 0);
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let started = results
            .lock()
            .expect("probe results lock")
            .started
            .contains(&probed.id);
        if kind != Kind::Startup && !started {
            continue;
        }
        let target = Target {
            cri: &cri,
            container_id: &probed.id,
            container: &probed.container,
            pod_ip: &probed.pod_ip,
        };
        match probe::run(&probe, &target).await {
            Ok(()) => {
                failures = 0;
                successes += 1;
                if successes >= success_threshold {
                    let changed = {
                        let mut r = results.lock().expect("probe results lock");
                        match kind {
                            Kind::Startup => r.started.insert(probed.id.clone()),
                            Kind::Readiness => r.ready.insert(probed.id.clone()),
                            Kind::Liveness => false,
                        }
                    };
                    if changed {
                        wake.notify_one();
                    }
                    if kind == Kind::Startup {
                        return;
                    }
                }
            }
            Err(message) => {
                successes = 0;
                failures += 1;
                events.record(
                    probed.reference.clone(),
                    EventKind::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.name()),
                );
                if failures >= failure_threshold {
                    let changed = {
                        let mut r = results.lock().expect("probe results lock");
                        match kind {
                            Kind::Readiness => r.ready.remove(&probed.id),
                            Kind::Liveness => r
                                .unhealthy
                                .insert(probed.id.clone(), KillReason::LivenessFailed)
                                .is_none(),
                            Kind::Startup => r
                                .unhealthy
                                .insert(probed.id.clone(), KillReason::StartupFailed)
                                .is_none(),
                        }
                    };
                    if changed {
                        wake.notify_one();
                    }
                    if kind != Kind::Readiness {
                        return;
                    }
                }
            }
        }
    }
}
