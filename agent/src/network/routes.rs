//! host-gw routes: every other node's podCIDR via that node's InternalIP,
//! in the main table, marked with our own routing protocol number so the
//! agent finds (and removes) exactly the routes it added.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

/// `proto 212` in `ip route`: Paddock's pod routes. A number no routing
/// daemon claims (iproute2's rt_protos, FRR's 186-198), so that `ip route`
/// does not name them `ospf` and no daemon takes them for its own.
pub const PROTOCOL: u8 = 212;

/// Desired routes: destination podCIDR → gateway node IP.
pub type Routes = BTreeMap<Ipv4Net, Ipv4Addr>;

/// Makes the routes marked as ours exactly `desired`.
pub async fn reconcile(handle: &Handle, desired: &Routes) -> Result<()> {
    let present = ours(handle).await?;
    for (dst, (gateway, message)) in &present {
        if desired.get(dst) != Some(gateway) {
            handle
                .route()
                .del(message.clone())
                .execute()
                .await
                .with_context(|| format!("removing the route to {dst} via {gateway}"))?;
            tracing::info!(%dst, %gateway, "removed pod route");
        }
    }
    for (dst, gateway) in desired {
        if present.get(dst).map(|(g, _)| g) == Some(gateway) {
            continue;
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(*gateway)
            .protocol(RouteProtocol::from(PROTOCOL))
            .build();
        match handle.route().add(route).replace().execute().await {
            Ok(()) => tracing::info!(%dst, %gateway, "added pod route"),
            // An unreachable gateway (not on a shared network) must not stop
            // the other routes.
            Err(e) => tracing::warn!(%dst, %gateway, "adding the pod route: {e}"),
        }
    }
    Ok(())
}

/// Our routes in the main table: destination → (gateway, message).
async fn ours(handle: &Handle) -> Result<BTreeMap<Ipv4Net, (Ipv4Addr, RouteMessage)>> {
    let dump = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = handle.route().get(dump).execute();
    let mut ours = BTreeMap::new();
    while let Some(route) = routes.try_next().await.context("listing routes")? {
        // Compared as numbers: netlink-packet-route parses the numbers it
        // knows into named variants.
        if u8::from(route.header.protocol) != PROTOCOL {
            continue;
        }
        let mut dst = None;
        let mut gateway = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(*a),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
                _ => {}
            }
        }
        if let (Some(dst), Some(gateway)) = (dst, gateway)
            && let Ok(net) = Ipv4Net::new(dst, route.header.destination_prefix_length)
        {
            ours.insert(net, (gateway, route));
        }
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 99, 2);

    /// `ip args` in the calling thread's network namespace; its output.
    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn routes(cidrs: &[&str]) -> Routes {
        cidrs
            .iter()
            .map(|c| (c.parse().unwrap(), GATEWAY))
            .collect()
    }

    /// Runs as root: a thread in a network namespace of its own, with a
    /// veth on 192.168.99.0/24 and a route that is not Paddock's.
    #[test]
    fn reconcile_adds_and_removes_exactly_its_own_routes() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (as root)");
            ip(&["link", "add", "pd0", "type", "veth", "peer", "name", "pd1"]);
            ip(&["addr", "add", "192.168.99.1/24", "dev", "pd0"]);
            ip(&["link", "set", "pd0", "up"]);
            ip(&["link", "set", "pd1", "up"]);
            ip(&["route", "add", "10.250.0.0/24", "via", "192.168.99.3"]);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (connection, handle, _) = rtnetlink::new_connection().unwrap();
                tokio::spawn(connection);

                let both = routes(&["10.244.1.0/24", "10.244.2.0/24"]);
                reconcile(&handle, &both).await.unwrap();
                let listed = ip(&["route", "show", "proto", &PROTOCOL.to_string()]);
                assert!(
                    listed.contains("10.244.1.0/24 via 192.168.99.2")
                        && listed.contains("10.244.2.0/24 via 192.168.99.2"),
                    "{listed}"
                );
                let found: Vec<Ipv4Net> = ours(&handle).await.unwrap().into_keys().collect();
                assert_eq!(found, both.keys().copied().collect::<Vec<_>>());

                // A node went away: its route goes, the others stay.
                reconcile(&handle, &routes(&["10.244.2.0/24"]))
                    .await
                    .unwrap();
                let table = ip(&["route", "show"]);
                assert!(!table.contains("10.244.1.0/24"), "{table}");
                assert!(table.contains("10.244.2.0/24 via 192.168.99.2"), "{table}");
                assert!(table.contains("10.250.0.0/24 via 192.168.99.3"), "{table}");
            });
        })
        .join()
        .expect("the test thread panicked");
    }
}
