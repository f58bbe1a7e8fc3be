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

/// `proto 188` in `ip route`: Paddock's pod routes.
pub const PROTOCOL: u8 = 188;

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
            .protocol(RouteProtocol::Other(PROTOCOL))
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
        if route.header.protocol != RouteProtocol::Other(PROTOCOL) {
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
