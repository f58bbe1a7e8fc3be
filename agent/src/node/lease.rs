//! The node's Lease in `kube-node-lease`: the heartbeat the node lifecycle
//! controller watches, renewed every 10 s.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const NAMESPACE: &str = "kube-node-lease";
/// How long the Lease holds without renewal (upstream's 40 s).
const DURATION_SECONDS: i32 = 40;

/// Renews `node`'s Lease every `period`, forever; failures are logged and
/// retried at the next tick.
pub async fn renew_forever(client: kube::Client, node: String, period: Duration) {
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    loop {
        if let Err(e) = renew(&api, &nodes, &node).await {
            tracing::warn!("renewing the node lease: {e:#}");
        }
        tokio::time::sleep(period).await;
    }
}

async fn renew(api: &Api<Lease>, nodes: &Api<Node>, node: &str) -> Result<()> {
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {
        "holderIdentity": node,
        "leaseDurationSeconds": DURATION_SECONDS,
        "renewTime": now,
    }});
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            // Owned by the Node, so it goes when the Node does.
            let node_uid = nodes
                .get(node)
                .await
                .context("reading the Node for its lease")?
                .metadata
                .uid
                .unwrap_or_default();
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.to_string(),
                        uid: node_uid,
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .context("creating the node lease")?;
            Ok(())
        }
        Err(e) => Err(e).context("renewing the node lease"),
    }
}
