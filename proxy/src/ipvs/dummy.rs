//! The `kube-ipvs0` dummy link. Every address a virtual service listens on
//! besides the node's own (cluster IPs, external and load-balancer IPs) is
//! bound to it, so that the kernel takes their packets as local, where IPVS
//! picks them up. The link stays down, as upstream leaves it: the local
//! routes exist all the same, and nothing answers ARP for the addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;

use super::socket::NetlinkSocket;

/// The link's name, as upstream names it.
pub const NAME: &str = "kube-ipvs0";

/// The dummy link in the caller's network namespace.
pub struct DummyLink {
    socket: NetlinkSocket,
    name: String,
    index: u32,
}

impl DummyLink {
    /// Finds the dummy link `name`, creating it if it does not exist.
    pub fn ensure(name: &str) -> Result<DummyLink> {
        let mut socket =
            NetlinkSocket::open(NETLINK_ROUTE).context("opening a route netlink socket")?;
        let index = match link_index(&mut socket, name)? {
            Some(index) => index,
            None => {
                let mut link = LinkMessage::default();
                link.attributes = vec![
                    LinkAttribute::IfName(name.to_string()),
                    LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Dummy)]),
                ];
                socket
                    .request(
                        RouteNetlinkMessage::NewLink(link),
                        NLM_F_CREATE | NLM_F_EXCL,
                        |_: RouteNetlinkMessage| Ok(()),
                    )
                    .with_context(|| format!("creating the dummy link {name}"))?;
                link_index(&mut socket, name)?
                    .with_context(|| format!("the dummy link {name} vanished after its creation"))?
            }
        };
        Ok(DummyLink {
            socket,
            name: name.to_string(),
            index,
        })
    }

    /// The addresses bound to the link.
    pub fn addresses(&mut self) -> Result<BTreeSet<IpAddr>> {
        let mut addresses = BTreeSet::new();
        let index = self.index;
        self.socket
            .request(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
                |reply: RouteNetlinkMessage| {
                    if let RouteNetlinkMessage::NewAddress(message) = reply
                        && message.header.index == index
                    {
                        addresses.extend(message.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        }));
                    }
                    Ok(())
                },
            )
            .with_context(|| format!("listing the addresses of {}", self.name))?;
        Ok(addresses)
    }

    /// Binds `addresses` (each as a /32 or /128); those already bound stay.
    pub fn bind(&mut self, addresses: &[IpAddr]) -> Result<()> {
        let messages = addresses
            .iter()
            .map(|ip| RouteNetlinkMessage::NewAddress(address_message(self.index, *ip)));
        let failures = self.socket.batch(messages, NLM_F_CREATE | NLM_F_EXCL)?;
        self.check(addresses, failures, libc::EEXIST, "binding")
    }

    /// Unbinds `addresses`; those not bound are fine.
    pub fn unbind(&mut self, addresses: &[IpAddr]) -> Result<()> {
        let messages = addresses
            .iter()
            .map(|ip| RouteNetlinkMessage::DelAddress(address_message(self.index, *ip)));
        let failures = self.socket.batch(messages, 0)?;
        self.check(addresses, failures, libc::EADDRNOTAVAIL, "unbinding")
    }

    fn check(
        &self,
        addresses: &[IpAddr],
        failures: Vec<(usize, i32)>,
        harmless: i32,
        doing: &str,
    ) -> Result<()> {
        let failures: Vec<String> = failures
            .into_iter()
            .filter(|(_, errno)| *errno != harmless)
            .map(|(index, errno)| {
                format!(
                    "{}: {}",
                    addresses[index],
                    std::io::Error::from_raw_os_error(errno)
                )
            })
            .collect();
        if !failures.is_empty() {
            bail!(
                "{doing} {} of {} addresses on {} failed: {}",
                failures.len(),
                addresses.len(),
                self.name,
                failures.join(", ")
            );
        }
        Ok(())
    }
}

/// The index of link `name`, if there is one.
fn link_index(socket: &mut NetlinkSocket, name: &str) -> Result<Option<u32>> {
    let mut request = LinkMessage::default();
    request.attributes = vec![LinkAttribute::IfName(name.to_string())];
    let mut index = None;
    let result = socket.request(
        RouteNetlinkMessage::GetLink(request),
        0,
        |reply: RouteNetlinkMessage| {
            if let RouteNetlinkMessage::NewLink(link) = reply {
                index = Some(link.header.index);
            }
            Ok(())
        },
    );
    match result {
        Ok(()) => Ok(index),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up link {name}")),
    }
}

/// `ip` as a host address (/32, /128) of link `index`.
fn address_message(index: u32, ip: IpAddr) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    match ip {
        IpAddr::V4(_) => {
            message.header.family = AddressFamily::Inet;
            message.header.prefix_len = 32;
            message.attributes = vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)];
        }
        IpAddr::V6(_) => {
            // No duplicate address detection on a link that never goes up.
            message.header.family = AddressFamily::Inet6;
            message.header.prefix_len = 128;
            message.header.flags = AddressHeaderFlags::Nodad;
            message.attributes = vec![
                AddressAttribute::Address(ip),
                AddressAttribute::Flags(AddressFlags::Nodad),
            ];
        }
    }
    message
}
