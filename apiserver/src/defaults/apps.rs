//! apps/v1: `SetDefaults_Deployment`, `SetDefaults_ReplicaSet` and their
//! pod templates.

use serde_json::{Map, Value};

use super::{object_at, object_entry, set_default};

pub(super) fn deployment(obj: &mut Map<String, Value>) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", 1);
    set_default(spec, "revisionHistoryLimit", 10);
    set_default(spec, "progressDeadlineSeconds", 600);
    if let Some(strategy) = object_entry(spec, "strategy") {
        set_default(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = object_entry(strategy, "rollingUpdate")
        {
            set_default(rolling, "maxUnavailable", "25%");
            set_default(rolling, "maxSurge", "25%");
        }
    }
    template(spec);
}

pub(super) fn replica_set(obj: &mut Map<String, Value>) {
    let Some(spec) = object_entry(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", 1);
    template(spec);
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(pod_spec) = object_at(spec, "template").and_then(|t| object_at(t, "spec")) {
        super::pod::pod_spec(pod_spec);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::defaults::apply;
    use crate::resources::lookup;

    /// `kubectl create deployment deploy-nginx --image=nginx` sends this.
    #[test]
    fn kubectl_create_deployment() {
        let mut deploy = json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": "deploy-nginx", "labels": {"app": "deploy-nginx"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "deploy-nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "deploy-nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        });
        apply(lookup("apps", "v1", "deployments").unwrap(), &mut deploy);
        let spec = &deploy["spec"];
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Always");
        assert_eq!(pod_spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod_spec["schedulerName"], "default-scheduler");
        assert_eq!(pod_spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod_spec["securityContext"], json!({}));
        assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "Always");
        // Pod-only defaults stay off templates, as upstream.
        assert!(pod_spec.get("enableServiceLinks").is_none());
        assert!(pod_spec.get("tolerations").is_none());
        assert!(pod_spec.get("priority").is_none());
    }

    #[test]
    fn recreate_strategy_has_no_rolling_update() {
        let mut deploy = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 3}});
        apply(lookup("apps", "v1", "deployments").unwrap(), &mut deploy);
        assert_eq!(deploy["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(deploy["spec"]["replicas"], 3);
    }

    #[test]
    fn replica_set_replicas() {
        let mut rs = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
        apply(lookup("apps", "v1", "replicasets").unwrap(), &mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(
            rs["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }
}
