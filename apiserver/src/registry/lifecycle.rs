//! What the cluster holds from the start and keeps up: the system
//! namespaces, the `kubernetes` Service with its Endpoints and EndpointSlice
//! pointing at the apiserver, a `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap in every namespace, and the termination of
//! deleted namespaces (their content is deleted, then the namespace).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::delete::DeleteOptions;
use super::update::{Target, UpdateCheck};
use super::{ListOptions, Registry, WriteOptions, keys, meta};
use crate::resources::{RESOURCES, Resource, lookup};
use crate::status::ApiResult;

/// The namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How often namespaces are looked over even when nothing changed.
const RESYNC: Duration = Duration::from_secs(5);
/// How often a terminating namespace is looked at.
const TERMINATING_RECHECK: Duration = Duration::from_millis(500);

/// The apiserver's address as Services see it.
pub struct Bootstrap {
    pub advertise_address: IpAddr,
    pub port: u16,
}

fn resource(group: &str, plural: &str) -> Result<&'static Resource> {
    let version = "v1";
    lookup(group, version, plural).with_context(|| format!("{plural} are not served"))
}

impl Registry {
    /// Creates the system namespaces and points the `kubernetes` Service at
    /// this apiserver.
    pub async fn bootstrap(&self, b: &Bootstrap) -> Result<()> {
        let namespaces = resource("", "namespaces")?;
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.ensure(namespaces, None, obj)
                .await
                .with_context(|| format!("creating namespace {ns}"))?;
        }
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": self.kubernetes_service_ip().to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": b.port}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
        });
        self.ensure(resource("", "services")?, Some("default"), service)
            .await
            .context("creating the kubernetes service")?;
        let ip = b.advertise_address.to_string();
        let endpoints = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{
                "addresses": [{"ip": ip}],
                "ports": [{"name": "https", "port": b.port, "protocol": "TCP"}],
            }],
        });
        self.upsert(resource("", "endpoints")?, "default", endpoints)
            .await
            .context("writing the kubernetes endpoints")?;
        let family = if b.advertise_address.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        };
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": family,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": b.port, "protocol": "TCP"}],
        });
        self.upsert(
            resource("discovery.k8s.io", "endpointslices")?,
            "default",
            slice,
        )
        .await
        .context("writing the kubernetes endpointslice")?;
        Ok(())
    }

    /// Makes `obj` the object of its name, creating or replacing it.
    async fn upsert(&self, res: &'static Resource, namespace: &str, obj: Value) -> ApiResult<()> {
        let name = meta::name(&obj).to_string();
        let opts = WriteOptions::default();
        if self
            .store
            .get(&keys::key(res, Some(namespace), &name))
            .is_none()
        {
            match self.create(res, Some(namespace), obj.clone(), &opts).await {
                Err(e) if e.reason == "AlreadyExists" => {}
                other => return other.map(|_| ()),
            }
        }
        self.update(res, Some(namespace), &name, obj, &opts, Target::Main)
            .await
            .map(|_| ())
    }

    /// The `default` ServiceAccount and `kube-root-ca.crt` of a namespace.
    async fn ensure_namespace_content(&self, ns: &str, ca_pem: &str) -> Result<()> {
        let accounts = resource("", "serviceaccounts")?;
        if self
            .store
            .get(&keys::key(accounts, Some(ns), "default"))
            .is_none()
        {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            self.ensure(accounts, Some(ns), sa).await?;
        }
        let configmaps = resource("", "configmaps")?;
        if self
            .store
            .get(&keys::key(configmaps, Some(ns), "kube-root-ca.crt"))
            .is_none()
        {
            let cm = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                },
                "data": {"ca.crt": ca_pem},
            });
            self.ensure(configmaps, Some(ns), cm).await?;
        }
        Ok(())
    }

    /// Deletes what a terminating namespace holds; once it is empty, drops
    /// its `kubernetes` finalizer, which removes it. Returns whether it is
    /// gone.
    async fn terminate_namespace(&self, ns: &str) -> Result<bool> {
        let mut remaining = 0;
        for res in RESOURCES.iter().filter(|r| r.namespaced) {
            let listed = self.list(res, Some(ns), &ListOptions::default())?;
            for obj in listed.items {
                let value = obj.parse();
                let name = meta::name(&value);
                match self
                    .delete(res, Some(ns), name, DeleteOptions::default())
                    .await
                {
                    Ok(deleted) if deleted.finished => {}
                    Ok(_) => remaining += 1,
                    Err(e) if e.code == 404 => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("deleting {} {ns}/{name}", res.plural));
                    }
                }
            }
        }
        if remaining > 0 {
            return Ok(false);
        }
        let namespaces = resource("", "namespaces")?;
        let result = self
            .guaranteed_update(
                namespaces,
                None,
                ns,
                &UpdateCheck::default(),
                &WriteOptions::default(),
                Target::Finalize,
                |current| {
                    let mut next = current.clone();
                    let kept: Vec<Value> = current
                        .pointer("/spec/finalizers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|f| f.as_str() != Some("kubernetes"))
                        .cloned()
                        .collect();
                    next["spec"]["finalizers"] = json!(kept);
                    Ok(next)
                },
            )
            .await;
        match result {
            Ok(_) => Ok(self.store.get(&keys::key(namespaces, None, ns)).is_none()),
            Err(e) if e.code == 404 => Ok(true),
            Err(e) => Err(e).with_context(|| format!("finalizing namespace {ns}")),
        }
    }

    /// One pass over all namespaces; whether any is still terminating.
    async fn reconcile_namespaces(&self, ca_pem: &str) -> Result<bool> {
        let namespaces = resource("", "namespaces")?;
        let mut terminating = false;
        for obj in self.list(namespaces, None, &ListOptions::default())?.items {
            let ns = obj.parse();
            let name = meta::name(&ns);
            if meta::is_deleting(&ns) {
                terminating |= !self.terminate_namespace(name).await?;
            } else {
                self.ensure_namespace_content(name, ca_pem).await?;
            }
        }
        Ok(terminating)
    }
}

/// Keeps namespaces' defaults in place and finishes deleted namespaces,
/// until `shutdown` turns true.
pub async fn run_namespace_lifecycle(
    registry: Arc<Registry>,
    ca_pem: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(namespaces) = resource("", "namespaces") else {
        return;
    };
    loop {
        let from = registry.store.revision();
        let wait = match registry.reconcile_namespaces(&ca_pem).await {
            Ok(true) => TERMINATING_RECHECK,
            Ok(false) => RESYNC,
            Err(e) => {
                tracing::warn!("namespace lifecycle: {e:#}");
                TERMINATING_RECHECK
            }
        };
        let mut changes = match registry.watch(namespaces, None, from) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("namespace lifecycle: watching namespaces: {e}");
                futures::stream::pending().boxed()
            }
        };
        tokio::select! {
            () = crate::shutdown::signalled(&mut shutdown) => return,
            _ = changes.next() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
