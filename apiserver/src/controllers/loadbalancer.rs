//! LoadBalancer IPs: every `type: LoadBalancer` Service gets
//! `status.loadBalancer.ingress` — an address from `--lb-pool` (a requested
//! `spec.loadBalancerIP` honoured when free), or without a pool the Ready
//! nodes' InternalIPs (k3s ServiceLB style). The allocation is the Services'
//! own status, so it survives restarts; a deleted Service, or one that is no
//! longer a LoadBalancer, frees its address. Announcing it is the proxy's job.
//! A Service naming a `spec.loadBalancerClass` belongs to another
//! implementation (MetalLB, a cloud's): it is left alone.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

use super::events::Recorder;
use super::informer::Informer;
use super::reconciler;

pub const COMPONENT: &str = "service-lb-controller";

/// Addresses to hand out: `a.b.c.d-a.b.c.e` ranges and CIDRs, comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPool(Vec<(u32, u32)>);

impl FromStr for LbPool {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<LbPool> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = if let Some((a, b)) = part.split_once('-') {
                let a: Ipv4Addr = a
                    .trim()
                    .parse()
                    .with_context(|| format!("{part:?}: bad start address"))?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .with_context(|| format!("{part:?}: bad end address"))?;
                (u32::from(a), u32::from(b))
            } else if part.contains('/') {
                let net: ipnet::Ipv4Net = part
                    .parse()
                    .with_context(|| format!("{part:?}: bad CIDR"))?;
                (u32::from(net.network()), u32::from(net.broadcast()))
            } else {
                let ip: Ipv4Addr = part
                    .parse()
                    .with_context(|| format!("{part:?}: bad address"))?;
                (u32::from(ip), u32::from(ip))
            };
            if first > last {
                bail!("{part:?}: the range ends before it starts");
            }
            ranges.push((first, last));
        }
        if ranges.is_empty() {
            bail!("{s:?}: no addresses, expected e.g. 192.168.56.200-192.168.56.250");
        }
        Ok(LbPool(ranges))
    }
}

impl LbPool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&ip))
    }

    /// The first address not in `taken`.
    pub fn first_free(&self, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.0
            .iter()
            .flat_map(|(a, b)| *a..=*b)
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
    }
}

pub struct Context {
    client: Client,
    services: Store<Service>,
    nodes: Store<Node>,
    pool: Option<LbPool>,
    recorder: Recorder,
    /// Addresses handed out that the cache does not show yet.
    in_flight: Mutex<HashMap<(String, String), Ipv4Addr>>,
}

pub async fn run(
    client: Client,
    services: &Informer<Service>,
    nodes: &Informer<Node>,
    pool: Option<LbPool>,
    recorder: &Recorder,
    resync: Duration,
) -> Result<()> {
    services.ready().await?;
    nodes.ready().await?;
    let svc_store = services.store();
    let waiting = services.store();
    let uses_node_ips = pool.is_none();
    let triggers = vec![
        reconciler::on_changes(services),
        // A service that goes (or stops being a LoadBalancer) may free the
        // address another one is waiting for.
        reconciler::on_related(services, move |_: &Service| {
            waiting
                .state()
                .iter()
                .filter(|svc| {
                    is_load_balancer(svc) && !has_other_class(svc) && ingress_ips(svc).is_empty()
                })
                .map(|svc| ObjectRef::from_obj(&**svc))
                .collect::<Vec<_>>()
        }),
        // Without a pool, the addresses are the nodes'.
        reconciler::on_related(nodes, move |_: &Node| {
            if !uses_node_ips {
                return Vec::new();
            }
            svc_store
                .state()
                .iter()
                .filter(|svc| is_load_balancer(svc) && !has_other_class(svc))
                .map(|svc| ObjectRef::from_obj(&**svc))
                .collect()
        }),
        reconciler::every(resync),
    ];
    let ctx = Arc::new(Context {
        client,
        services: services.store(),
        nodes: nodes.store(),
        pool,
        recorder: recorder.as_component(COMPONENT),
        in_flight: Mutex::default(),
    });
    reconciler::run("loadbalancer", services.store(), triggers, ctx, reconcile).await;
    Ok(())
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

/// Whether another load-balancer implementation owns the service.
fn has_other_class(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_deref())
        .is_some_and(|class| !class.is_empty())
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    if has_other_class(&svc) {
        return Ok(Action::await_change());
    }
    let key = (svc.namespace().unwrap_or_default(), svc.name_any());
    let current = ingress_ips(&svc);
    let wanted = if !is_load_balancer(&svc) || svc.metadata.deletion_timestamp.is_some() {
        ctx.in_flight.lock().await.remove(&key);
        Vec::new()
    } else if let Some(pool) = &ctx.pool {
        match allocate(&svc, pool, &ctx, &key).await {
            Some(ip) => vec![ip.to_string()],
            None => {
                ctx.recorder.warning(
                    &*svc,
                    "AllocationFailed",
                    "no free address left in the load balancer pool".into(),
                );
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
        }
    } else {
        ready_node_ips(&ctx.nodes)
    };
    if wanted == current {
        return Ok(Action::await_change());
    }
    let ingress: Vec<_> = wanted
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = json!({"status": {"loadBalancer": {"ingress": if ingress.is_empty() { serde_json::Value::Null } else { ingress.into() }}}});
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &key.0);
    api.patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting the load balancer address of {}/{}", key.0, key.1))?;
    if let Some(ip) = wanted.first() {
        ctx.recorder
            .normal(&*svc, "IPAllocated", format!("Assigned IP [\"{ip}\"]"));
    }
    Ok(Action::await_change())
}

/// The service's address from the pool: the one it has, else the one it
/// asks for, else the first free one.
async fn allocate(
    svc: &Service,
    pool: &LbPool,
    ctx: &Context,
    key: &(String, String),
) -> Option<Ipv4Addr> {
    let mut in_flight = ctx.in_flight.lock().await;
    let services = ctx.services.state();
    let mut taken: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for other in &services {
        if (other.namespace().unwrap_or_default(), other.name_any()) != *key
            && is_load_balancer(other)
        {
            taken.extend(
                ingress_ips(other)
                    .iter()
                    .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
            );
        }
    }
    in_flight.retain(|k, _| {
        services
            .iter()
            .any(|s| (s.namespace().unwrap_or_default(), s.name_any()) == *k)
    });
    taken.extend(
        in_flight
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, ip)| *ip),
    );
    let usable = |ip: &Ipv4Addr| pool.contains(*ip) && !taken.contains(ip);
    let has = ingress_ips(svc)
        .first()
        .and_then(|ip| ip.parse().ok())
        .filter(usable);
    let requested = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .filter(usable);
    let ip = match requested {
        Some(requested) => Some(requested),
        None => has
            .or_else(|| in_flight.get(key).copied().filter(usable))
            .or_else(|| pool.first_free(&taken)),
    }?;
    in_flight.insert(key.clone(), ip);
    Some(ip)
}

fn ready_node_ips(nodes: &Store<Node>) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .state()
        .iter()
        .filter_map(|n| n.status.as_ref())
        .filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_ranges_cidrs_and_addresses() {
        let pool: LbPool = "192.168.56.200-192.168.56.202, 10.0.0.8/30,10.1.1.1"
            .parse()
            .unwrap();
        assert!(pool.contains("192.168.56.201".parse().unwrap()));
        assert!(pool.contains("10.0.0.11".parse().unwrap()));
        assert!(pool.contains("10.1.1.1".parse().unwrap()));
        assert!(!pool.contains("192.168.56.203".parse().unwrap()));
        assert!("192.168.56.9-192.168.56.1".parse::<LbPool>().is_err());
        assert!("".parse::<LbPool>().is_err());
        assert!("300.1.1.1".parse::<LbPool>().is_err());
    }

    #[test]
    fn first_free_skips_taken() {
        let pool: LbPool = "192.168.56.200-192.168.56.201".parse().unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(
            pool.first_free(&taken),
            Some("192.168.56.200".parse().unwrap())
        );
        taken.insert("192.168.56.200".parse().unwrap());
        assert_eq!(
            pool.first_free(&taken),
            Some("192.168.56.201".parse().unwrap())
        );
        taken.insert("192.168.56.201".parse().unwrap());
        assert_eq!(pool.first_free(&taken), None);
    }
}
