//! Pods: READY, the STATUS upstream derives from the container states
//! (`ContainerCreating`, `CrashLoopBackOff`, `Init:1/2`, `Completed`,
//! `Terminating`, …) and RESTARTS with the time of the last restart.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{array_at, int_at, str_at};
use super::{Column, age, age_of, core_doc, name_of};

pub fn columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text(
            "Ready",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        Column::text(
            "Status",
            "The aggregate status of the containers in this pod.",
        ),
        Column::text(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        Column::age(),
        Column::wide("IP", core_doc("PodStatus", "podIP")),
        Column::wide("Node", core_doc("PodSpec", "nodeName")),
        Column::wide("Nominated Node", core_doc("PodStatus", "nominatedNodeName")),
        Column::wide("Readiness Gates", core_doc("PodSpec", "readinessGates")),
    ]
}

/// A container status's `lastState.terminated.finishedAt`.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(age::parse)
}

/// Sidecars: init containers with `restartPolicy: Always`.
fn is_restartable_init(pod: &Value, name: &str) -> bool {
    array_at(pod, "/spec/initContainers")
        .iter()
        .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    array_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

/// `Signal:9` / `ExitCode:1` for a termination without a reason.
fn exit_text(terminated: &Value) -> String {
    match int_at(terminated, "/signal") {
        0 => format!("ExitCode:{}", int_at(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

/// Restarts counted so far and the latest restart.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<DateTime<Utc>>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "/restartCount");
        if let Some(at) = last_termination(status) {
            self.last = self.last.max(Some(at));
        }
    }
}

pub fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    let gated = array_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".to_owned();
    }

    let init_specs = array_at(pod, "/spec/initContainers");
    let sidecars = init_specs
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let total = array_at(pod, "/spec/containers").len() + sidecars;
    let mut ready = 0;
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();

    let mut initializing = false;
    for (i, status) in array_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        restarts.add(status);
        let sidecar = is_restartable_init(pod, str_at(status, "/name"));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = str_at(status, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match str_at(terminated, "/reason") {
                "" => format!("Init:{}", exit_text(terminated)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in array_at(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting = str_at(status, "/state/waiting/reason");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(terminated) = terminated {
                reason = match str_at(terminated, "/reason") {
                    "" => exit_text(terminated),
                    r => r.to_owned(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }

    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        if str_at(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_text = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!(
                "{} ({} ago)",
                restarts.count,
                age::human_duration(now - last)
            )
        }
        _ => restarts.count.to_string(),
    };

    let none = |s: &str| {
        if s.is_empty() {
            "<none>".to_owned()
        } else {
            s.to_owned()
        }
    };
    let gates = array_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                let wanted = str_at(g, "/conditionType");
                array_at(pod, "/status/conditions")
                    .iter()
                    .find(|c| str_at(c, "/type") == wanted)
                    .is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name_of(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_text.into(),
        age_of(pod, now),
        none(str_at(pod, "/status/podIPs/0/ip")).into(),
        none(str_at(pod, "/spec/nodeName")).into(),
        none(str_at(pod, "/status/nominatedNodeName")).into(),
        readiness_gates.into(),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn now() -> DateTime<Utc> {
        age::parse(&json!("2024-05-01T12:00:00Z")).unwrap()
    }

    fn row(pod: Value) -> Vec<Value> {
        cells(&pod, now())
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn one_container() -> Value {
        json!({"containers": [{"name": "nginx", "image": "nginx"}]})
    }

    #[test]
    fn pending_unscheduled_pod() {
        let cells = row(pod(one_container(), json!({"phase": "Pending"})));
        assert_eq!(
            cells,
            json!([
                "web", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn container_creating_then_running() {
        let creating = row(pod(
            one_container(),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "nginx", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ));
        assert_eq!(creating[2], "ContainerCreating");

        let mut spec = one_container();
        spec["nodeName"] = json!("w1");
        let running = row(pod(
            spec,
            json!({"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
                                          "state": {"running": {"startedAt": "2024-05-01T11:56:00Z"}}}]}),
        ));
        assert_eq!(running[1], "1/1");
        assert_eq!(running[2], "Running");
        assert_eq!(running[5], "10.244.1.5");
        assert_eq!(running[6], "w1");
    }

    #[test]
    fn crash_loop_with_restart_time() {
        let cells = row(pod(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{
                "name": "nginx", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                             "finishedAt": "2024-05-01T11:57:00Z"}}}]}),
        ));
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "5 (3m ago)");
    }

    #[test]
    fn completed_error_and_signals() {
        let terminated = |state: Value| {
            row(pod(
                one_container(),
                json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "nginx", "ready": false, "restartCount": 0, "state": {"terminated": state}}]}),
            ))[2]
                .clone()
        };
        assert_eq!(
            terminated(json!({"exitCode": 0, "reason": "Completed"})),
            "Completed"
        );
        assert_eq!(
            terminated(json!({"exitCode": 1, "reason": "Error"})),
            "Error"
        );
        assert_eq!(terminated(json!({"exitCode": 137})), "ExitCode:137");
        assert_eq!(terminated(json!({"exitCode": 0, "signal": 9})), "Signal:9");
    }

    #[test]
    fn init_containers() {
        let spec = json!({
            "initContainers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
            "containers": [{"name": "main", "image": "x"}],
        });
        let waiting_second = row(pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
        ));
        assert_eq!(waiting_second[2], "Init:1/2");
        let failing = row(pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        ));
        assert_eq!(failing[2], "Init:CrashLoopBackOff");
        assert_eq!(failing[3], "3");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let cells = row(pod(
            json!({"initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always"}],
                   "containers": [{"name": "main", "image": "x"}]}),
            json!({"phase": "Running",
                   "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                   "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 0, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        ));
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
    }

    #[test]
    fn terminating_and_readiness_gates() {
        let mut p = pod(
            json!({"containers": [{"name": "a", "image": "x"}],
                   "readinessGates": [{"conditionType": "example.com/lb"}]}),
            json!({"phase": "Running", "conditions": [{"type": "example.com/lb", "status": "True"}]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        let cells = row(p);
        assert_eq!(cells[2], "Terminating");
        assert_eq!(cells[8], "1/1");
    }
}
