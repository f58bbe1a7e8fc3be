//! The node's interface on the LAN (the one holding the node IP), and the
//! load-balancer addresses the announcer puts on it.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::Handle;

pub struct Link {
    handle: Handle,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Link {
    /// The interface that holds `node_ip` in this network namespace. It is
    /// an error if none does: the announcer never touches another one.
    pub async fn holding(node_ip: IpAddr) -> Result<Link> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a route netlink socket")?;
        tokio::spawn(connection);
        let index = addresses(&handle)
            .await?
            .iter()
            .find(|m| address_of(m) == Some(node_ip))
            .map(|m| m.header.index)
            .with_context(|| format!("no interface holds the node IP {node_ip}"))?;
        let link = handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .context("reading the node interface")?
            .context("the node interface vanished")?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .context("the node interface has no Ethernet address")?;
        Ok(Link { handle, index, mac })
    }

    /// The /32 addresses on the interface.
    pub async fn host_addresses(&self) -> Result<Vec<Ipv4Addr>> {
        Ok(addresses(&self.handle)
            .await?
            .iter()
            .filter(|m| m.header.index == self.index && m.header.prefix_len == 32)
            .filter_map(|m| match address_of(m) {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            })
            .collect())
    }

    /// Adds `ip/32`; already there is fine.
    pub async fn add(&self, ip: Ipv4Addr) -> Result<()> {
        self.handle
            .address()
            .add(self.index, IpAddr::V4(ip), 32)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding {ip}/32"))
    }

    /// Removes `ip/32` if it is there.
    pub async fn remove(&self, ip: Ipv4Addr) -> Result<()> {
        let found = addresses(&self.handle).await?.into_iter().find(|m| {
            m.header.index == self.index
                && m.header.prefix_len == 32
                && address_of(m) == Some(IpAddr::V4(ip))
        });
        let Some(message) = found else {
            return Ok(());
        };
        self.handle
            .address()
            .del(message)
            .execute()
            .await
            .with_context(|| format!("removing {ip}/32"))
    }
}

async fn addresses(handle: &Handle) -> Result<Vec<AddressMessage>> {
    handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .context("listing addresses")
}

/// The address of an address message (IFA_LOCAL, else IFA_ADDRESS).
fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let mut found = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => found = Some(*ip),
            _ => {}
        }
    }
    found
}
