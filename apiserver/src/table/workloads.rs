//! Deployments and ReplicaSets.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{containers, int_at, label_selector, or_none};
use super::{Column, age_of, doc, name_of};

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";

fn apps_doc(definition: &str, property: &str) -> &'static str {
    doc(&format!("io.k8s.api.apps.v1.{definition}"), property)
}

pub fn deployment_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::text("Ready", "Number of the pod with ready state"),
        Column::text(
            "Up-to-date",
            apps_doc("DeploymentStatus", "updatedReplicas"),
        ),
        Column::text(
            "Available",
            apps_doc("DeploymentStatus", "availableReplicas"),
        ),
        Column::age(),
        Column::wide("Containers", CONTAINERS),
        Column::wide("Images", IMAGES),
        Column::wide("Selector", apps_doc("DeploymentSpec", "selector")),
    ]
}

pub fn deployment_cells(deploy: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = containers(deploy.pointer("/spec/template/spec"));
    vec![
        name_of(deploy),
        format!(
            "{}/{}",
            int_at(deploy, "/status/readyReplicas"),
            int_at(deploy, "/spec/replicas")
        )
        .into(),
        int_at(deploy, "/status/updatedReplicas").into(),
        int_at(deploy, "/status/availableReplicas").into(),
        age_of(deploy, now),
        names.into(),
        images.into(),
        label_selector(deploy.pointer("/spec/selector")).into(),
    ]
}

pub fn replica_set_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::integer("Desired", apps_doc("ReplicaSetSpec", "replicas")),
        Column::integer("Current", apps_doc("ReplicaSetStatus", "replicas")),
        Column::integer("Ready", apps_doc("ReplicaSetStatus", "readyReplicas")),
        Column::age(),
        Column::wide("Containers", CONTAINERS),
        Column::wide("Images", IMAGES),
        Column::wide("Selector", apps_doc("ReplicaSetSpec", "selector")),
    ]
}

pub fn replica_set_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = containers(rs.pointer("/spec/template/spec"));
    vec![
        name_of(rs),
        int_at(rs, "/spec/replicas").into(),
        int_at(rs, "/status/replicas").into(),
        int_at(rs, "/status/readyReplicas").into(),
        age_of(rs, now),
        names.into(),
        images.into(),
        or_none(label_selector(rs.pointer("/spec/selector"))).into(),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::table::age;

    fn now() -> DateTime<Utc> {
        age::parse(&json!("2024-05-01T12:00:00Z")).unwrap()
    }

    #[test]
    fn scaled_deployment_before_any_pod_is_ready() {
        let deploy = json!({
            "metadata": {"name": "deploy-nginx", "creationTimestamp": "2024-04-29T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "deploy-nginx"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
        });
        assert_eq!(
            deployment_cells(&deploy, now()),
            json!([
                "deploy-nginx",
                "0/3",
                0,
                0,
                "2d3h",
                "nginx",
                "nginx",
                "app=deploy-nginx"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn replica_set() {
        let rs = json!({
            "metadata": {"name": "web-5d8f"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}},
                     "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        let cells = replica_set_cells(&rs, now());
        assert_eq!(cells[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(
            cells[5..],
            [
                json!("a,b"),
                json!("a:1,b:2"),
                json!("app=web,pod-template-hash=5d8f")
            ]
        );
    }
}
