//! The pod's status as upstream's kubelet reports it: phase, conditions,
//! IPs, start time, and a status per (init) container with its state,
//! last state, restart count, readiness and image; a waiting reason from
//! the last sync (CrashLoopBackOff, ErrImagePull…) wins over the runtime's
//! view of a container that is not running. Pure.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::plan::restarts_after_exit;
use super::spec::{pod_spec, qos_class};
use super::state::{Instance, PodState};

/// Why a container waits, as the last sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything the status is computed from besides the pod and its state.
pub struct Facts<'a> {
    pub waiting: &'a HashMap<String, Waiting>,
    /// Instances (by id) whose readiness probe passes.
    pub ready: &'a HashSet<String>,
    /// Instances whose startup probe passed (or that have none).
    pub started: &'a HashSet<String>,
    /// Termination messages by instance id.
    pub messages: &'a HashMap<String, String>,
    /// Image names to show, by image reference.
    pub image_names: &'a HashMap<String, String>,
    pub host_ip: &'a str,
    /// `containerID` prefix: the runtime's name.
    pub runtime: &'a str,
    pub now: Timestamp,
}

pub fn compute(pod: &Pod, state: &PodState, facts: &Facts<'_>) -> PodStatus {
    let spec = pod_spec(pod);
    let old = pod.status.clone().unwrap_or_default();
    let init = spec.init_containers.as_deref().unwrap_or(&[]);
    let initialized = init.iter().all(|c| init_done(c, state));
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_statuses: Vec<ContainerStatus> = init
        .iter()
        .map(|c| {
            // Init containers run again after a failure, unless the pod
            // never restarts anything; sidecars always do.
            let policy = match (c.restart_policy.as_deref(), policy) {
                (Some("Always"), _) => "Always",
                (_, "Never") => "Never",
                _ => "OnFailure",
            };
            container_status(c, policy, state, facts, "PodInitializing")
        })
        .collect();
    let app_default = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, policy, state, facts, app_default))
        .collect();
    let phase = phase(policy, init, &init_statuses, &statuses, initialized);

    let host_network = spec.host_network == Some(true);
    let pod_ips: Vec<String> = if host_network {
        vec![facts.host_ip.to_string()]
    } else {
        state
            .ready_sandbox()
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|c| !init_done(c, state))
        .map(|c| c.name.as_str())
        .collect();
    let gates_unmet: Vec<&str> = spec
        .readiness_gates
        .iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .filter(|gate| {
            !old.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == *gate && c.status == "True")
        })
        .collect();

    let now = Time(facts.now);
    let condition = |kind: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: kind.into(),
            status: status.into(),
            reason: if ok { None } else { reason },
            message: if ok { None } else { message },
            last_transition_time: Some(transition),
            last_probe_time: None,
            observed_generation: None,
        }
    };
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let containers_ready = if terminal {
        (false, Some("PodCompleted".to_string()), None)
    } else {
        (
            unready.is_empty(),
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    let ready = if terminal || !unready.is_empty() {
        containers_ready.clone()
    } else {
        (
            gates_unmet.is_empty(),
            Some("ReadinessGatesNotReady".to_string()),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gates_unmet.join(", ")
            )),
        )
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !host_network && !pod_ips.is_empty() || host_network && state.ready_sandbox().is_some(),
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: {}",
                list(&incomplete)
            )),
        ),
        condition("Ready", ready.0, ready.1, ready.2),
        condition(
            "ContainersReady",
            containers_ready.0,
            containers_ready.1,
            containers_ready.2,
        ),
    ];
    // Conditions others own (PodScheduled, readiness gates) stay.
    for c in old.conditions.iter().flatten() {
        if !conditions.iter().any(|ours| ours.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    conditions.sort_by_key(|c| condition_order(&c.type_));

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(facts.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: facts.host_ip.to_string(),
        }]),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or(Some(now)),
        init_container_statuses: (!init.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: old
            .qos_class
            .clone()
            .or_else(|| Some(qos_class(spec).into())),
        ..old
    }
}

fn condition_order(kind: &str) -> usize {
    [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .position(|k| *k == kind)
    .unwrap_or(usize::MAX)
}

/// Whether init container `c` is done: exited 0, or a running sidecar.
fn init_done(c: &Container, state: &PodState) -> bool {
    let sidecar = c.restart_policy.as_deref() == Some("Always");
    state
        .latest(&c.name)
        .is_some_and(|l| (l.exited() && l.exit_code == 0 && !sidecar) || (sidecar && l.running()))
}

/// The status of container `c`, which runs again after an exit as
/// `policy` says.
fn container_status(
    c: &Container,
    policy: &str,
    state: &PodState,
    facts: &Facts<'_>,
    default_reason: &str,
) -> ContainerStatus {
    let latest = state.latest(&c.name);
    let previous = state.previous(&c.name);
    let waiting = facts.waiting.get(&c.name);
    let waiting_state = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    };
    let (state_now, last) = match (latest, waiting) {
        (None, w) => (
            match w {
                Some(w) => {
                    waiting_state(&w.reason, Some(w.message.clone()).filter(|m| !m.is_empty()))
                }
                None => waiting_state(default_reason, None),
            },
            None,
        ),
        (Some(l), _) if l.running() => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(l.started_at)),
                }),
                ..Default::default()
            },
            previous.map(|p| terminated(p, facts)),
        ),
        // Waiting to run again (a back-off, a failed start): the exit is
        // the last state. A container that will not run again shows its
        // exit, whatever failed last (as upstream).
        (Some(l), Some(w)) if l.exited() && restarts_after_exit(policy, l.exit_code) => (
            waiting_state(&w.reason, Some(w.message.clone()).filter(|m| !m.is_empty())),
            Some(terminated(l, facts)),
        ),
        (Some(l), _) if l.exited() => {
            (terminated(l, facts), previous.map(|p| terminated(p, facts)))
        }
        (Some(_), w) => (
            match w {
                Some(w) => {
                    waiting_state(&w.reason, Some(w.message.clone()).filter(|m| !m.is_empty()))
                }
                None => waiting_state("ContainerCreating", None),
            },
            previous.map(|p| terminated(p, facts)),
        ),
    };
    let running = latest.filter(|l| l.running());
    ContainerStatus {
        name: c.name.clone(),
        state: Some(state_now),
        last_state: Some(last.unwrap_or_default()),
        ready: running.is_some_and(|l| facts.ready.contains(&l.id)),
        started: Some(running.is_some_and(|l| facts.started.contains(&l.id))),
        restart_count: latest.map_or(0, |l| l.restart_count),
        image: latest
            .and_then(|l| {
                facts
                    .image_names
                    .get(&l.image_ref)
                    .or(facts.image_names.get(&l.image))
            })
            .cloned()
            .or_else(|| c.image.clone())
            .unwrap_or_default(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("{}://{}", facts.runtime, l.id)),
        ..Default::default()
    }
}

fn terminated(i: &Instance, facts: &Facts<'_>) -> ContainerState {
    let reason = match (i.reason.as_str(), i.exit_code) {
        ("", 0) => "Completed".to_string(),
        ("", _) => "Error".to_string(),
        (r, _) => r.to_string(),
    };
    let message = facts
        .messages
        .get(&i.id)
        .cloned()
        .or_else(|| Some(i.message.clone()))
        .filter(|m| !m.is_empty());
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: i.exit_code,
            reason: Some(reason),
            message,
            started_at: (i.started_at > 0).then(|| time(i.started_at)),
            finished_at: (i.finished_at > 0).then(|| time(i.finished_at)),
            container_id: Some(format!("{}://{}", facts.runtime, i.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn time(nanos: i64) -> Time {
    Time(Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or_default())
}

/// Upstream's `getPhase`.
fn phase(
    policy: &str,
    init: &[Container],
    init_statuses: &[ContainerStatus],
    statuses: &[ContainerStatus],
    initialized: bool,
) -> &'static str {
    if !initialized {
        let failed_for_good = policy == "Never"
            && init.iter().zip(init_statuses).any(|(c, s)| {
                c.restart_policy.as_deref() != Some("Always")
                    && s.state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .is_some_and(|t| t.exit_code != 0)
            });
        return if failed_for_good { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            let restarting = s
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some());
            if restarting {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// Whether the instance is a running container whose status matters for
/// readiness: used to seed readiness after an agent restart.
pub fn was_ready(pod: &Pod, container_id: &str, runtime: &str) -> bool {
    let id = format!("{runtime}://{container_id}");
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .any(|s| s.ready && s.container_id.as_deref() == Some(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::state::{Sandbox, State};
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(policy: &str, containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("nginx".into()),
            ..Default::default()
        };
        Pod {
            metadata: Default::default(),
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: containers.iter().map(c).collect(),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                qos_class: Some("BestEffort".into()),
                ..Default::default()
            }),
        }
    }

    fn instance(name: &str, restart: i32, state: State, code: i32) -> Instance {
        Instance {
            id: format!("{name}{restart}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            restart_count: restart,
            state,
            created_at: i64::from(restart) + 1,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == State::Exited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image: "sha256:img".into(),
            image_ref: "docker.io/library/nginx@sha256:abc".into(),
            hash: String::new(),
            log_path: String::new(),
        }
    }

    fn state(containers: Vec<Instance>) -> PodState {
        let mut containers = containers;
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        PodState {
            sandboxes: vec![Sandbox {
                id: "sb".into(),
                attempt: 0,
                ready: true,
                created_at: 0,
                ips: vec!["10.244.0.9".into()],
            }],
            containers,
        }
    }

    struct Owned {
        waiting: HashMap<String, Waiting>,
        ready: HashSet<String>,
        started: HashSet<String>,
        messages: HashMap<String, String>,
        images: HashMap<String, String>,
    }

    impl Owned {
        fn new(ready: &[&str]) -> Owned {
            Owned {
                waiting: HashMap::new(),
                ready: ready.iter().map(|s| s.to_string()).collect(),
                started: ready.iter().map(|s| s.to_string()).collect(),
                messages: HashMap::new(),
                images: HashMap::from([(
                    "docker.io/library/nginx@sha256:abc".to_string(),
                    "docker.io/library/nginx:latest".to_string(),
                )]),
            }
        }

        fn facts(&self) -> Facts<'_> {
            Facts {
                waiting: &self.waiting,
                ready: &self.ready,
                started: &self.started,
                messages: &self.messages,
                image_names: &self.images,
                host_ip: "192.168.56.11",
                runtime: "paddock",
                now: Timestamp::from_second(1_800_000_000).unwrap(),
            }
        }
    }

    fn condition<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn a_running_ready_pod() {
        let owned = Owned::new(&["web0"]);
        let s = compute(
            &pod("Always", &["web"], &[]),
            &state(vec![instance("web", 0, State::Running, 0)]),
            &owned.facts(),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.9"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.56.11"));
        assert_eq!(condition(&s, "Ready").status, "True");
        assert_eq!(
            condition(&s, "PodScheduled").status,
            "True",
            "others' conditions stay"
        );
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.started == Some(true));
        assert_eq!(c.container_id.as_deref(), Some("paddock://web0"));
        assert_eq!(c.image, "docker.io/library/nginx:latest");
        assert_eq!(c.image_id, "docker.io/library/nginx@sha256:abc");
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn failing_readiness_keeps_the_pod_unready() {
        let owned = Owned::new(&[]);
        let s = compute(
            &pod("Always", &["web"], &[]),
            &state(vec![instance("web", 0, State::Running, 0)]),
            &owned.facts(),
        );
        let ready = condition(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ContainersNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [web]")
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn crash_loop_back_off_waits_with_the_last_termination() {
        let mut owned = Owned::new(&[]);
        owned.waiting.insert(
            "crash".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 10s restarting failed container=crash pod=p_default(u)".into(),
            },
        );
        let st = state(vec![
            instance("crash", 0, State::Exited, 1),
            instance("crash", 1, State::Exited, 1),
        ]);
        let s = compute(&pod("Always", &["crash"], &[]), &st, &owned.facts());
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(c.restart_count, 1);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn phases_of_finished_pods() {
        let owned = Owned::new(&[]);
        let done = state(vec![instance("job", 0, State::Exited, 0)]);
        let failed = state(vec![instance("job", 0, State::Exited, 2)]);
        let phase = |policy, st: &PodState| {
            compute(&pod(policy, &["job"], &[]), st, &owned.facts())
                .phase
                .unwrap()
        };
        assert_eq!(phase("Never", &done), "Succeeded");
        assert_eq!(phase("Never", &failed), "Failed");
        assert_eq!(phase("OnFailure", &done), "Succeeded");
        let s = compute(&pod("Never", &["job"], &[]), &done, &owned.facts());
        assert_eq!(
            condition(&s, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
    }

    #[test]
    fn a_failed_start_shows_as_the_exit_unless_it_restarts() {
        let mut owned = Owned::new(&[]);
        owned.waiting.insert(
            "job".into(),
            Waiting {
                reason: "RunContainerError".into(),
                message: "exec: no such file".into(),
            },
        );
        let mut failed = instance("job", 0, State::Exited, 128);
        failed.reason = "StartError".into();
        let st = state(vec![failed]);
        let s = compute(&pod("Never", &["job"], &[]), &st, &owned.facts());
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (128, Some("StartError"))
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = compute(&pod("Always", &["job"], &[]), &st, &owned.facts());
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("RunContainerError"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.reason.as_deref(), Some("StartError"));
    }

    #[test]
    fn pending_while_initializing() {
        let owned = Owned::new(&[]);
        let st = state(vec![instance("init", 0, State::Running, 0)]);
        let s = compute(&pod("Always", &["web"], &["init"]), &st, &owned.facts());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = condition(&s, "Initialized");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("PodInitializing"));
        let failed = state(vec![instance("init", 0, State::Exited, 1)]);
        let s = compute(&pod("Never", &["web"], &["init"]), &failed, &owned.facts());
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_hold() {
        let owned = Owned::new(&["web0"]);
        let mut p = pod("Always", &["web"], &[]);
        let st = state(vec![instance("web", 0, State::Running, 0)]);
        let first = compute(&p, &st, &owned.facts());
        p.status = Some(first.clone());
        let mut later = Owned::new(&["web0"]);
        later.images.clear();
        let mut facts = later.facts();
        facts.now = Timestamp::from_second(1_900_000_000).unwrap();
        let second = compute(&p, &st, &facts);
        assert_eq!(
            condition(&first, "Ready").last_transition_time,
            condition(&second, "Ready").last_transition_time
        );
        assert_eq!(first.start_time, second.start_time);
    }
}
