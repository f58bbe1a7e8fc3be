//! The node's conditions, from what was measured and what the runtime says,
//! with upstream's types, reasons and messages; a condition keeps its
//! transition time while its status holds.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::machine::Pressure;

/// Why the runtime is not ready (upstream's message), or `None`.
pub fn runtime_problem(status: Result<&cri::RuntimeStatus, &anyhow::Error>) -> Option<String> {
    let status = match status {
        Ok(status) => status,
        Err(e) => return Some(format!("container runtime is down: {e:#}")),
    };
    let mut problems = Vec::new();
    for (kind, what) in [
        ("RuntimeReady", "container runtime not ready"),
        ("NetworkReady", "container runtime network not ready"),
    ] {
        match status.conditions.iter().find(|c| c.r#type == kind) {
            Some(c) if c.status => {}
            Some(c) => problems.push(format!(
                "{what}: {kind}=false reason:{} message:{}",
                c.reason, c.message
            )),
            None => problems.push(format!("{what}: {kind} is not reported")),
        }
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// The four conditions, stamped `now`.
pub fn conditions(
    pressure: Pressure,
    runtime_problem: Option<&str>,
    previous: &[NodeCondition],
    now: &Time,
) -> Vec<NodeCondition> {
    let pressure_condition = |kind: &str, under: bool, ok: (&str, &str), bad: (&str, &str)| {
        let (reason, message) = if under { bad } else { ok };
        (
            kind.to_string(),
            under,
            reason.to_string(),
            message.to_string(),
        )
    };
    let ready = match runtime_problem {
        None => (
            "Ready".to_string(),
            true,
            "KubeletReady".to_string(),
            "kubelet is posting ready status".to_string(),
        ),
        Some(problem) => (
            "Ready".to_string(),
            false,
            "KubeletNotReady".to_string(),
            problem.to_string(),
        ),
    };
    [
        pressure_condition(
            "MemoryPressure",
            pressure.memory,
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
        ),
        pressure_condition(
            "DiskPressure",
            pressure.disk,
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ),
        pressure_condition(
            "PIDPressure",
            pressure.pids,
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
        ),
        ready,
    ]
    .into_iter()
    .map(|(kind, status, reason, message)| {
        let status = if status { "True" } else { "False" }.to_string();
        let transition = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: kind,
            status,
            reason: Some(reason),
            message: Some(message),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    })
    .collect()
}

/// Whether two condition lists differ in more than their heartbeats.
pub fn changed(a: &[NodeCondition], b: &[NodeCondition]) -> bool {
    let strip = |c: &[NodeCondition]| -> Vec<(String, String, Option<String>, Option<String>)> {
        c.iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect()
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn status(network: bool) -> cri::RuntimeStatus {
        let condition = |kind: &str, ok: bool| cri::RuntimeCondition {
            r#type: kind.into(),
            status: ok,
            reason: if ok { "" } else { "NetworkPluginNotReady" }.into(),
            message: if ok { "" } else { "cni plugin not initialized" }.into(),
        };
        cri::RuntimeStatus {
            conditions: vec![
                condition("RuntimeReady", true),
                condition("NetworkReady", network),
            ],
        }
    }

    #[test]
    fn not_ready_until_the_network_is() {
        let problem = runtime_problem(Ok(&status(false))).unwrap();
        assert_eq!(
            problem,
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:cni plugin not initialized"
        );
        assert_eq!(runtime_problem(Ok(&status(true))), None);
        let down = anyhow::anyhow!("connection refused");
        assert!(
            runtime_problem(Err(&down))
                .unwrap()
                .contains("container runtime is down")
        );

        let c = conditions(
            Pressure {
                memory: false,
                disk: false,
                pids: false,
            },
            Some(&problem),
            &[],
            &at(1),
        );
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("KubeletNotReady"))
        );
        let memory = c.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(
            (memory.status.as_str(), memory.reason.as_deref()),
            ("False", Some("KubeletHasSufficientMemory"))
        );
    }

    #[test]
    fn transition_times_hold_while_the_status_does() {
        let none = Pressure {
            memory: false,
            disk: false,
            pids: false,
        };
        let first = conditions(none, Some("down"), &[], &at(1));
        let second = conditions(none, Some("down"), &first, &at(2));
        let third = conditions(none, None, &second, &at(3));
        let ready = |c: &[NodeCondition]| c.iter().find(|c| c.type_ == "Ready").unwrap().clone();
        assert_eq!(ready(&second).last_transition_time, Some(at(1)));
        assert_eq!(ready(&second).last_heartbeat_time, Some(at(2)));
        assert_eq!(ready(&third).last_transition_time, Some(at(3)));
        assert!(!changed(&first, &second));
        assert!(changed(&second, &third));
    }
}
