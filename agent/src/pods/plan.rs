//! What a pod needs next, decided from its spec and what the runtime has,
//! as upstream's `computePodActions`: a new sandbox (and with it a fresh
//! start) when there is none ready, init containers one at a time in
//! order, then every container that should run and does not, per the
//! restart policy; containers failing liveness or startup probes, or whose
//! spec changed, are killed first. Pure: the worker carries it out.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::state::{PodState, State};

/// Dead instances kept per container: the latest and the one before it
/// (`kubectl logs --previous`).
const KEEP_INSTANCES: usize = 2;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Stop every container and the sandbox(es): a new sandbox follows, or
    /// the pod is done.
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    pub kill: Vec<Kill>,
    pub start: Vec<Start>,
    /// Old dead instances to remove.
    pub remove: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub reason: KillReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    LivenessFailed,
    StartupFailed,
    SpecChanged,
}

#[derive(Debug, PartialEq)]
pub struct Start {
    pub name: String,
    pub init: bool,
}

/// `hashes`: each container's spec hash by name; `unhealthy`: instances
/// (by id) whose liveness or startup probe says they must go.
pub fn plan(
    spec: &PodSpec,
    state: &PodState,
    hashes: &HashMap<String, String>,
    unhealthy: &HashMap<String, KillReason>,
) -> Plan {
    let mut plan = Plan {
        remove: dead_beyond_kept(spec, state),
        ..Default::default()
    };
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init = spec.init_containers.as_deref().unwrap_or(&[]);

    if let Some(attempt) = sandbox_needed(spec, state) {
        if policy == "Never" && attempt != 0 && !state.containers.is_empty() {
            // The sandbox died after the containers ran: the pod is over.
            plan.kill_pod =
                state.sandboxes.iter().any(|s| s.ready) || state.running().next().is_some();
            return plan;
        }
        plan.kill_pod = !state.sandboxes.is_empty();
        plan.create_sandbox = Some(attempt);
        match init.first() {
            Some(first) => plan.start.push(start(first, true)),
            None => {
                for c in &spec.containers {
                    let succeeded = state
                        .latest(&c.name)
                        .is_some_and(|l| l.exited() && l.exit_code == 0);
                    if policy == "Always" || !succeeded {
                        plan.start.push(start(c, false));
                    }
                }
            }
        }
        return plan;
    }

    // Init containers, one at a time; sidecars (restartPolicy Always) count
    // as done once running, and are kept running.
    for c in init {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        match state
            .latest(&c.name)
            .map(|l| (l.state, l.exit_code, l.id.clone()))
        {
            Some((State::Running, ..)) if sidecar => {}
            Some((State::Running, ..)) => return plan,
            Some((State::Exited, 0, _)) if !sidecar => {}
            Some((State::Exited, ..)) if !sidecar && policy == "Never" => {
                plan.kill_pod = true;
                return plan;
            }
            _ => {
                plan.start.push(start(c, true));
                return plan;
            }
        }
    }

    let mut keep = 0;
    for c in &spec.containers {
        let latest = state.latest(&c.name);
        match latest {
            Some(l) if l.running() => {
                let reason = if hashes
                    .get(&c.name)
                    .is_some_and(|h| !l.hash.is_empty() && *h != l.hash)
                {
                    Some(KillReason::SpecChanged)
                } else {
                    unhealthy.get(&l.id).copied()
                };
                match reason {
                    None => keep += 1,
                    Some(reason) => {
                        plan.kill.push(Kill {
                            id: l.id.clone(),
                            name: c.name.clone(),
                            reason,
                        });
                        if reason == KillReason::SpecChanged || policy != "Never" {
                            plan.start.push(start(c, false));
                        }
                    }
                }
            }
            _ if should_start(policy, latest.map(|l| (l.state, l.exit_code))) => {
                plan.start.push(start(c, false))
            }
            _ => {}
        }
    }
    if keep == 0 && plan.start.is_empty() {
        // Nothing runs and nothing will: release the sandbox.
        plan.kill_pod = state.sandboxes.iter().any(|s| s.ready) || state.running().next().is_some();
        plan.kill.clear();
    }
    plan
}

/// A new sandbox's attempt number, if the pod needs one.
fn sandbox_needed(spec: &PodSpec, state: &PodState) -> Option<u32> {
    let Some(newest) = state.sandboxes.first() else {
        return Some(0);
    };
    let ready = state.sandboxes.iter().filter(|s| s.ready).count();
    let host_network = spec.host_network == Some(true);
    if !newest.ready || ready > 1 || (!host_network && newest.ips.is_empty()) {
        return Some(newest.attempt + 1);
    }
    None
}

/// Whether a container whose latest instance is `latest` (state, exit
/// code) starts (again) under `policy`.
fn should_start(policy: &str, latest: Option<(State, i32)>) -> bool {
    match latest {
        None => true,
        Some((State::Running, _)) => false,
        Some((State::Created | State::Unknown, _)) => true,
        Some((State::Exited, code)) => restarts_after_exit(policy, code),
    }
}

/// Whether a container that exited with `code` runs again under `policy`
/// (its pod's; `Always` for a sidecar).
pub(super) fn restarts_after_exit(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

fn start(c: &Container, init: bool) -> Start {
    Start {
        name: c.name.clone(),
        init,
    }
}

/// Dead instances beyond the kept ones, and those of containers the spec
/// no longer has.
fn dead_beyond_kept(spec: &PodSpec, state: &PodState) -> Vec<String> {
    let names: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.as_str())
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut remove = Vec::new();
    for c in &state.containers {
        let n = seen.entry(c.name.as_str()).or_default();
        *n += 1;
        let unknown = !names.contains(&c.name.as_str());
        if !c.running() && (*n > KEEP_INSTANCES || unknown) {
            remove.push(c.id.clone());
        }
    }
    remove
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::state::{Instance, Sandbox};

    fn spec(policy: &str, init: &[&str], containers: &[&str]) -> PodSpec {
        let c = |name: &&str| Container {
            name: name.to_string(),
            ..Default::default()
        };
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            containers: containers.iter().map(c).collect(),
            ..Default::default()
        }
    }

    fn sandbox(attempt: u32, ready: bool) -> Sandbox {
        Sandbox {
            id: format!("sb{attempt}"),
            attempt,
            ready,
            created_at: i64::from(attempt),
            ips: if ready {
                vec!["10.244.0.5".into()]
            } else {
                vec![]
            },
        }
    }

    fn instance(name: &str, restart: i32, state: State, code: i32) -> Instance {
        Instance {
            id: format!("{name}-{restart}"),
            sandbox_id: "sb0".into(),
            name: name.into(),
            restart_count: restart,
            state,
            created_at: i64::from(restart),
            started_at: 0,
            finished_at: 0,
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            hash: "h".into(),
            log_path: String::new(),
        }
    }

    fn state(sandboxes: Vec<Sandbox>, mut containers: Vec<Instance>) -> PodState {
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        PodState {
            sandboxes,
            containers,
        }
    }

    fn run(spec: &PodSpec, state: &PodState) -> Plan {
        let hashes = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), "h".to_string()))
            .collect();
        plan(spec, state, &hashes, &HashMap::new())
    }

    fn starts(plan: &Plan) -> Vec<&str> {
        plan.start.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container() {
        let p = run(
            &spec("Always", &["init1", "init2"], &["app"]),
            &PodState::default(),
        );
        assert_eq!(p.create_sandbox, Some(0));
        assert!(!p.kill_pod);
        assert_eq!(starts(&p), ["init1"]);
        let p = run(&spec("Always", &[], &["a", "b"]), &PodState::default());
        assert_eq!(starts(&p), ["a", "b"]);
    }

    #[test]
    fn init_containers_run_in_order_then_the_app_containers() {
        let s = spec("Always", &["init1", "init2"], &["app"]);
        let running = state(
            vec![sandbox(0, true)],
            vec![instance("init1", 0, State::Running, 0)],
        );
        assert_eq!(run(&s, &running), Plan::default());
        let first_done = state(
            vec![sandbox(0, true)],
            vec![instance("init1", 0, State::Exited, 0)],
        );
        assert_eq!(starts(&run(&s, &first_done)), ["init2"]);
        let all_done = state(
            vec![sandbox(0, true)],
            vec![
                instance("init1", 0, State::Exited, 0),
                instance("init2", 0, State::Exited, 0),
            ],
        );
        assert_eq!(starts(&run(&s, &all_done)), ["app"]);
    }

    #[test]
    fn a_failed_init_container_retries_unless_the_policy_is_never() {
        let failed = state(
            vec![sandbox(0, true)],
            vec![instance("init1", 0, State::Exited, 1)],
        );
        assert_eq!(
            starts(&run(&spec("Always", &["init1"], &["app"]), &failed)),
            ["init1"]
        );
        let p = run(&spec("Never", &["init1"], &["app"]), &failed);
        assert!(p.kill_pod && p.start.is_empty());
    }

    #[test]
    fn exited_containers_restart_per_policy() {
        let ok = state(
            vec![sandbox(0, true)],
            vec![instance("app", 0, State::Exited, 0)],
        );
        let failed = state(
            vec![sandbox(0, true)],
            vec![instance("app", 0, State::Exited, 1)],
        );
        assert_eq!(starts(&run(&spec("Always", &[], &["app"]), &ok)), ["app"]);
        assert_eq!(
            starts(&run(&spec("OnFailure", &[], &["app"]), &failed)),
            ["app"]
        );
        let p = run(&spec("OnFailure", &[], &["app"]), &ok);
        assert!(p.start.is_empty() && p.kill_pod, "done: the sandbox goes");
        let p = run(&spec("Never", &[], &["app"]), &failed);
        assert!(p.start.is_empty() && p.kill_pod);
    }

    #[test]
    fn a_dead_sandbox_is_replaced_and_everything_starts_over() {
        let s = spec("Always", &[], &["app"]);
        let dead = state(
            vec![sandbox(0, false)],
            vec![instance("app", 0, State::Exited, 137)],
        );
        let p = run(&s, &dead);
        assert_eq!((p.kill_pod, p.create_sandbox), (true, Some(1)));
        assert_eq!(starts(&p), ["app"]);
        let p = run(&spec("Never", &[], &["app"]), &dead);
        assert_eq!(
            p.create_sandbox, None,
            "a Never pod is over when its sandbox dies"
        );
    }

    #[test]
    fn unhealthy_or_changed_containers_are_killed_and_restarted() {
        let s = spec("Always", &[], &["app"]);
        let running = state(
            vec![sandbox(0, true)],
            vec![instance("app", 0, State::Running, 0)],
        );
        let unhealthy = HashMap::from([("app-0".to_string(), KillReason::LivenessFailed)]);
        let hashes = HashMap::from([("app".to_string(), "h".to_string())]);
        let p = plan(&s, &running, &hashes, &unhealthy);
        assert_eq!(p.kill.len(), 1);
        assert_eq!(starts(&p), ["app"]);
        let changed = HashMap::from([("app".to_string(), "new".to_string())]);
        let p = plan(&s, &running, &changed, &HashMap::new());
        assert_eq!(p.kill[0].reason, KillReason::SpecChanged);
        assert_eq!(run(&s, &running), Plan::default());
    }

    #[test]
    fn only_the_two_newest_dead_instances_are_kept() {
        let s = spec("Always", &[], &["app"]);
        let st = state(
            vec![sandbox(0, true)],
            vec![
                instance("app", 0, State::Exited, 1),
                instance("app", 1, State::Exited, 1),
                instance("app", 2, State::Exited, 1),
            ],
        );
        assert_eq!(run(&s, &st).remove, ["app-0"]);
    }
}
