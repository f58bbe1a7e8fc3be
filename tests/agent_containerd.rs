//! Acceptance of the agent on containerd 1.6 + runc (issue 9): the same
//! scenarios as on Paddock's runtime (`agent/mod.rs`), with the agent
//! pointed at containerd's socket, containerd configured by
//! `scripts/containerd-config.sh` (`make containerd-config`).

mod agent;

use anyhow::Result;
use paddock_testkit::cluster::Runtime;
use serde_json::Value;

#[test]
fn nginx_runs_serves_logs_and_survives_an_agent_crash() -> Result<()> {
    agent::nginx_runs_serves_logs_and_survives_an_agent_crash(Runtime::Containerd)
}

#[test]
fn crash_loops_back_off_and_readiness_gates_ready() -> Result<()> {
    agent::crash_loops_back_off_and_readiness_gates_ready(Runtime::Containerd)
}

#[test]
fn kubectl_exec_runs_commands_in_the_container() -> Result<()> {
    agent::kubectl_exec_runs_commands_in_the_container(Runtime::Containerd)
}

#[test]
fn delete_stops_within_the_grace_period() -> Result<()> {
    agent::delete_stops_within_the_grace_period(Runtime::Containerd)
}

#[test]
fn two_hundred_pods_leave_nothing_behind() -> Result<()> {
    agent::two_hundred_pods_leave_nothing_behind(Runtime::Containerd)
}

/// Pods that finish in different ways, on both runtimes: what a user sees
/// of them (phase, state, reason, exit code, message, image, logs) is the
/// same, apart from the runtime's name in container IDs and the addresses.
#[test]
fn the_same_pods_look_the_same_on_both_runtimes() -> Result<()> {
    use std::thread;
    let ours = thread::spawn(|| finished_pods(Runtime::Paddock));
    let theirs = finished_pods(Runtime::Containerd)?;
    let ours = ours
        .join()
        .map_err(|_| anyhow::anyhow!("the paddock cluster panicked"))??;
    let differences: Vec<String> = ours
        .iter()
        .zip(theirs.iter())
        .filter(|((_, paddock), (_, containerd))| paddock != containerd)
        .map(|((name, paddock), (_, containerd))| {
            format!(
                "pod {name}:\n  Paddock's runtime: {paddock}\n  containerd:        {containerd}"
            )
        })
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    Ok(())
}

const FINISHING: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo done"]}
---
apiVersion: v1
kind: Pod
metadata: {name: fail}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo failing >&2; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: message}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "echo bye > /dev/termination-log; exit 1"]}
---
apiVersion: v1
kind: Pod
metadata: {name: fallback}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo last words; exit 2"]
    terminationMessagePolicy: FallbackToLogsOnError
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: busybox, command: ["/no/such/binary"]}
---
apiVersion: v1
kind: Pod
metadata: {name: environment, labels: {app: env}}
spec:
  restartPolicy: Never
  hostname: envhost
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo $POD_NAME $POD_NAMESPACE $GREETING $(id -u); hostname; tail -1 /etc/hosts | cut -f2; grep -c nameserver /etc/resolv.conf"]
    env:
    - {name: GREETING, value: "hello $(POD_NAME)"}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    securityContext: {runAsUser: 1000}
"#;

/// What a user sees of each pod of `FINISHING` once it is over, with the
/// runtime's name and the addresses left out, by pod name.
fn finished_pods(runtime: Runtime) -> Result<Vec<(String, Value)>> {
    let cluster = agent::cluster(runtime)?;
    cluster.kubectl_apply(FINISHING)?;
    let mut seen = Vec::new();
    for name in [
        "done",
        "fail",
        "message",
        "fallback",
        "missing",
        "environment",
    ] {
        // Finished, and its sandbox stopped: what a user sees from then on.
        let pod = cluster.wait_pod(name, "finished", agent::START, |p| {
            let finished = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            let stopped = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "PodReadyToStartContainers" && c["status"] == "False")
            });
            (finished && stopped).then(|| p.clone())
        })?;
        let status = agent::container_status(&pod, "main");
        let terminated = &status["state"]["terminated"];
        let logs = cluster.kubectl_output(&["logs", name])?;
        let logs = (
            logs.status.success(),
            String::from_utf8_lossy(&logs.stdout).into_owned(),
        );
        // The runtime's own words for a failed start differ; what it
        // failed on is named by both.
        let message = match terminated["reason"].as_str() {
            Some("StartError") => serde_json::json!(
                terminated["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("/no/such/binary"))
            ),
            _ => terminated["message"].clone(),
        };
        seen.push((
            name.to_string(),
            serde_json::json!({
                "phase": pod["status"]["phase"],
                "reason": terminated["reason"],
                "exitCode": terminated["exitCode"],
                "message": message,
                "ready": status["ready"],
                "started": status["started"],
                "restartCount": status["restartCount"],
                "image": status["image"],
                "imageID": status["imageID"].as_str().map(|id| id.split('@').next().unwrap_or_default().to_string()),
                "containerID": status["containerID"].as_str().is_some_and(|id| id.contains("://")),
                "logs": logs,
                "conditions": pod["status"]["conditions"].as_array().map(|cs| {
                    cs.iter().map(|c| format!("{}={} {}", c["type"], c["status"], c["reason"])).collect::<Vec<_>>()
                }),
            }),
        ));
    }
    Ok(seen)
}
