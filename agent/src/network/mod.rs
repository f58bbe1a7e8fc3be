//! The pod network of this node: the CNI network list for its podCIDR
//! (written once the node IPAM controller assigns one), IP forwarding, and
//! host-gw routes to the other nodes' podCIDRs, kept in line with the Nodes
//! as they come and go.

pub mod conflist;
mod routes;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use routes::Routes;

/// How often routes are checked even when no Node changed.
const RESYNC: Duration = Duration::from_secs(30);

pub struct Network {
    pub client: kube::Client,
    pub node_name: String,
    pub cni_conf_dir: PathBuf,
    pub ipam_dir: PathBuf,
}

impl Network {
    pub async fn run(self) -> Result<()> {
        enable_forwarding()?;
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        let api: Api<Node> = Api::all(self.client.clone());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut listing: BTreeMap<String, Node> = BTreeMap::new();
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Apply(node))) => {
                        nodes.insert(node.metadata.name.clone().unwrap_or_default(), node);
                    }
                    Some(Ok(Event::Delete(node))) => {
                        nodes.remove(node.metadata.name.as_deref().unwrap_or_default());
                    }
                    Some(Ok(Event::Init)) => {
                        listing.clear();
                        continue;
                    }
                    Some(Ok(Event::InitApply(node))) => {
                        listing.insert(node.metadata.name.clone().unwrap_or_default(), node);
                        continue;
                    }
                    Some(Ok(Event::InitDone)) => nodes = std::mem::take(&mut listing),
                    Some(Err(e)) => {
                        tracing::warn!("watching nodes: {e}");
                        continue;
                    }
                    None => anyhow::bail!("the node watch ended"),
                },
                _ = resync.tick() => {}
            }
            let (own, routes) = desired(&nodes, &self.node_name);
            if let Some(cidr) = own {
                self.write_conflist(cidr)?;
            }
            if let Err(e) = routes::reconcile(&handle, &routes).await {
                tracing::warn!("reconciling pod routes: {e:#}");
            }
        }
    }

    /// Writes the network list for `cidr` unless it is already there.
    fn write_conflist(&self, cidr: Ipv4Net) -> Result<()> {
        let path = self.cni_conf_dir.join(conflist::FILE_NAME);
        let content = conflist::render(cidr, &self.ipam_dir);
        if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.cni_conf_dir)
            .with_context(|| format!("creating {}", self.cni_conf_dir.display()))?;
        write_atomically(&path, &content)?;
        tracing::info!(%cidr, path = %path.display(), "wrote the pod network's CNI config");
        Ok(())
    }
}

/// This node's podCIDR, and a route to every other node's podCIDR via its
/// InternalIP.
fn desired(nodes: &BTreeMap<String, Node>, me: &str) -> (Option<Ipv4Net>, Routes) {
    let mut own = None;
    let mut routes = Routes::new();
    for (name, node) in nodes {
        let Some(cidr) = pod_cidr(node) else {
            continue;
        };
        if name == me {
            own = Some(cidr);
        } else if let Some(ip) = internal_ip(node) {
            routes.insert(cidr, ip);
        }
    }
    (own, routes)
}

fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec
        .as_ref()?
        .pod_cidr
        .as_deref()?
        .parse::<Ipv4Net>()
        .ok()
        .map(|n| n.trunc())
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| match a.address.parse() {
            Ok(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
}

/// Forwarding on, and bridged traffic through iptables where the kernel
/// offers it (Services reached from a pod on the same bridge need it).
fn enable_forwarding() -> Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IP forwarding")?;
    let bridge = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if bridge.exists()
        && let Err(e) = std::fs::write(bridge, "1")
    {
        tracing::warn!("enabling bridge-nf-call-iptables: {e}");
    }
    Ok(())
}

fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> (String, Node) {
        let node = Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(String::from),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                ..Default::default()
            }),
        };
        (name.to_string(), node)
    }

    #[test]
    fn routes_to_every_other_node_with_a_pod_cidr() {
        let nodes = BTreeMap::from([
            node("master", Some("10.244.0.0/24"), "192.168.56.10"),
            node("w1", Some("10.244.1.0/24"), "192.168.56.11"),
            node("w2", None, "192.168.56.12"),
        ]);
        let (own, routes) = desired(&nodes, "w1");
        assert_eq!(own, Some("10.244.1.0/24".parse().unwrap()));
        assert_eq!(
            routes,
            Routes::from([(
                "10.244.0.0/24".parse().unwrap(),
                "192.168.56.10".parse().unwrap()
            )])
        );
        let (own, routes) = desired(&nodes, "w2");
        assert_eq!(own, None);
        assert_eq!(routes.len(), 2);
    }
}
