//! A Deployment's status from its ReplicaSets: the counts `kubectl get
//! deploy` shows, and the Available and Progressing conditions `kubectl
//! rollout status` reads (with upstream's reasons and messages).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// The counts from the ReplicaSets' own status; conditions carried over.
pub fn counts(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    max_unavailable: i32,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let replicas = sum(|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let ready = sum(|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available = sum(|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    });
    let updated = new
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let wanted = d.spec.replicas.unwrap_or(1);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)),
        observed_generation: d.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
        terminating_replicas: None,
    };
    let condition = if available >= wanted - max_unavailable {
        condition(
            AVAILABLE,
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

/// Every wanted replica is updated and available, and the spec observed.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let wanted = d.spec.replicas.unwrap_or(1);
    status.updated_replicas == Some(wanted)
        && status.replicas == Some(wanted)
        && status.available_replicas == Some(wanted)
        && status.observed_generation >= d.metadata.generation
}

/// Sets the Progressing condition after a rollout step, as upstream's
/// `syncRolloutStatus`; returns when to check the progress deadline again.
pub fn progress(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    status: &mut DeploymentStatus,
    now: Timestamp,
) -> Option<SignedDuration> {
    let deadline = d
        .spec
        .progress_deadline_seconds
        .filter(|&s| s != i32::MAX)?;
    let current = get(status, PROGRESSING).cloned();
    if current
        .as_ref()
        .is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT))
    {
        return None;
    }
    let new_name = new.map(|rs| rs.name_any()).unwrap_or_default();
    if is_complete(d, status) {
        let msg = format!("ReplicaSet {new_name:?} has successfully progressed.");
        set_condition(
            status,
            condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now),
        );
        return None;
    }
    if made_progress(d.status.as_ref(), status) {
        let msg = format!("ReplicaSet {new_name:?} is progressing.");
        let mut cond = condition(PROGRESSING, "True", "ReplicaSetUpdated", &msg, now);
        // Progress refreshes lastUpdateTime even with the same reason.
        if let Some(current) = &current
            && current.status.as_deref() == Some("True")
        {
            cond.last_transition_time = current.last_transition_time.clone();
        }
        remove_condition(status, PROGRESSING);
        set_condition(status, cond);
    } else if let Some(current) = get(status, PROGRESSING)
        && current.reason.as_deref() != Some(NEW_RS_AVAILABLE)
    {
        let since = current.last_update_time.as_ref().map_or(now, |t| t.0);
        let until = since + SignedDuration::from_secs(i64::from(deadline));
        if until < now {
            let msg = format!("ReplicaSet {new_name:?} has timed out progressing.");
            set_condition(
                status,
                condition(PROGRESSING, "False", TIMED_OUT, &msg, now),
            );
            return None;
        }
        return Some(until.duration_since(now) + SignedDuration::from_secs(1));
    }
    Some(SignedDuration::from_secs(i64::from(deadline)))
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available
/// pods, or fewer old ones, than the last status said.
fn made_progress(old: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let empty = DeploymentStatus::default();
    let old = old.unwrap_or(&empty);
    let old_olds = n(old.replicas) - n(old.updated_replicas);
    let new_olds = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_olds < old_olds
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// Upstream's `SetDeploymentCondition`: same status and reason → unchanged;
/// same status → keeps the transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let type_ = cond.type_.clone().unwrap_or_default();
    if let Some(current) = get(status, &type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = &mut status.conditions {
        conditions.retain(|c| c.type_.as_deref() != Some(type_));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec::default(),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn counts_and_availability() {
        let d = deployment(3);
        let old = rs("web-old", 2, 2);
        let new = rs("web-new", 2, 1);
        let now = Timestamp::now();
        let status = counts(&d, &[&old, &new], Some(&new), 0, now);
        assert_eq!(status.replicas, Some(4));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(0));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(
            get(&status, AVAILABLE).unwrap().status.as_deref(),
            Some("True")
        );
        let status = counts(&d, &[&new], Some(&new), 0, now);
        let available = get(&status, AVAILABLE).unwrap();
        assert_eq!(available.status.as_deref(), Some("False"));
        assert_eq!(
            available.reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
    }

    #[test]
    fn progressing_then_complete() {
        let d = deployment(2);
        let new = rs("web-abc", 2, 1);
        let now = Timestamp::now();
        let mut status = counts(&d, &[&new], Some(&new), 0, now);
        assert!(progress(&d, Some(&new), &mut status, now).is_some());
        let cond = get(&status, PROGRESSING).unwrap();
        assert_eq!(cond.reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"web-abc\" is progressing.")
        );

        let done = rs("web-abc", 2, 2);
        let mut status = counts(&d, &[&done], Some(&done), 0, now);
        assert!(progress(&d, Some(&done), &mut status, now).is_none());
        let cond = get(&status, PROGRESSING).unwrap();
        assert_eq!(cond.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let mut d = deployment(2);
        let new = rs("web-abc", 2, 0);
        let start = Timestamp::now();
        let mut status = counts(&d, &[&new], Some(&new), 0, start);
        progress(&d, Some(&new), &mut status, start);
        d.status = Some(status.clone());
        let later = start + SignedDuration::from_secs(601);
        let mut status = counts(&d, &[&new], Some(&new), 0, later);
        assert!(progress(&d, Some(&new), &mut status, later).is_none());
        let cond = get(&status, PROGRESSING).unwrap();
        assert_eq!(cond.status.as_deref(), Some("False"));
        assert_eq!(cond.reason.as_deref(), Some(TIMED_OUT));
    }
}
