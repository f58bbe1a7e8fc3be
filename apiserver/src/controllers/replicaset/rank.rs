//! Which pods a ReplicaSet removes first when it has too many: upstream's
//! `ActivePods` order — unscheduled before scheduled, pending before
//! running, not ready before ready, ready for less time first, more restarts
//! first, newest first.

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};

use k8s_openapi::api::core::v1::Pod;

use crate::controllers::pods;

/// Sorts `pods` so the ones to delete first come first.
pub fn sort_for_deletion(pods: &mut [impl Borrow<Pod>]) {
    pods.sort_by(|a, b| compare(a.borrow(), b.borrow()));
}

fn compare(a: &Pod, b: &Pod) -> Ordering {
    let key = |p: &Pod| {
        let phase_rank = match pods::phase(p) {
            "Pending" => 0,
            "Unknown" => 1,
            _ => 2,
        };
        let ready_since = pods::condition(p, "Ready")
            .filter(|c| c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (
            pods::node_name(p).is_some(),
            phase_rank,
            pods::is_ready(p),
            // Ready more recently sorts first.
            Reverse(ready_since),
            Reverse(restarts),
            Reverse(created),
        )
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn unscheduled_pending_unready_and_newest_go_first() {
        let mut pods = vec![
            pod("old-ready", Some("n1"), "Running", Some(100), 10),
            pod("new-ready", Some("n1"), "Running", Some(200), 20),
            pod("running-unready", Some("n1"), "Running", None, 5),
            pod("pending", Some("n1"), "Pending", None, 1),
            pod("unscheduled", None, "Pending", None, 0),
        ];
        sort_for_deletion(&mut pods);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "running-unready",
                "new-ready",
                "old-ready"
            ]
        );
    }
}
