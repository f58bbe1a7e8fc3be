//! A blocking client of the kernel's `IPVS` generic netlink family.

use std::io;

use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_sys::protocols::NETLINK_GENERIC;

use super::message::{Attr, Command, FAMILY_NAME, IpvsMessage};
use super::types::{Change, DestinationStatus, ServiceKey, VirtualService, service_family};
use crate::ipvs::socket::{self, NetlinkSocket};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this kernel has no IPVS (generic netlink family \"IPVS\" is not registered): load the \
         ip_vs module"
    )]
    Unavailable,
    #[error("IPVS netlink: {0}")]
    Socket(#[from] socket::Error),
    #[error("{request}: {source}")]
    Request {
        request: String,
        #[source]
        source: socket::Error,
    },
    #[error("{} of the IPVS changes failed; the first, {}: {}", .0.len(), .0[0].0, .0[0].1)]
    Changes(Vec<(Change, io::Error)>),
}

/// What the kernel says of its IPVS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// `(major, minor, patch)`, 1.2.1 for a long time.
    pub version: (u8, u8, u8),
    pub connection_table_size: u32,
}

/// A connection to the kernel's IPVS, in the caller's network namespace.
pub struct Ipvs {
    socket: NetlinkSocket,
    family_id: u16,
}

impl Ipvs {
    /// Opens a netlink socket and resolves the `IPVS` family.
    pub fn connect() -> Result<Ipvs, Error> {
        let mut socket = NetlinkSocket::open(NETLINK_GENERIC).map_err(socket::Error::from)?;
        let family_id = resolve_family(&mut socket)?;
        Ok(Ipvs { socket, family_id })
    }

    fn message(&self, command: Command, attrs: Vec<Attr>) -> GenlMessage<IpvsMessage> {
        let mut message = GenlMessage::from_payload(IpvsMessage { command, attrs });
        message.set_resolved_family_id(self.family_id);
        message
    }

    /// The kernel's IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, Error> {
        let request = self.message(Command::GetInfo, Vec::new());
        let mut info = Info {
            version: (0, 0, 0),
            connection_table_size: 0,
        };
        self.socket
            .request(request, 0, |reply: GenlMessage<IpvsMessage>| {
                for attr in reply.payload.attrs {
                    match attr {
                        Attr::InfoVersion(v) => {
                            let [_, major, minor, patch] = v.to_be_bytes();
                            info.version = (major, minor, patch);
                        }
                        Attr::InfoConnTableSize(size) => info.connection_table_size = size,
                        _ => {}
                    }
                }
                Ok(())
            })
            .map_err(|source| request_error("reading the IPVS version", source))?;
        Ok(info)
    }

    /// Every virtual service keyed by address (not by firewall mark).
    pub fn services(&mut self) -> Result<Vec<VirtualService>, Error> {
        let request = self.message(Command::GetService, Vec::new());
        let mut services = Vec::new();
        self.socket
            .request(request, NLM_F_DUMP, |reply: GenlMessage<IpvsMessage>| {
                for attr in reply.payload.attrs {
                    if let Attr::Service(attrs) = attr
                        && let Some(service) = VirtualService::from_attrs(&attrs)?
                    {
                        services.push(service);
                    }
                }
                Ok(())
            })
            .map_err(|source| request_error("listing IPVS virtual services", source))?;
        Ok(services)
    }

    /// The real servers of `service`, with their connection counts.
    pub fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<DestinationStatus>, Error> {
        let request = self.message(Command::GetDest, vec![Attr::Service(service.attrs())]);
        let family = service_family(service);
        let mut destinations = Vec::new();
        self.socket
            .request(request, NLM_F_DUMP, |reply: GenlMessage<IpvsMessage>| {
                for attr in reply.payload.attrs {
                    if let Attr::Dest(attrs) = attr {
                        destinations.push(DestinationStatus::from_attrs(family, &attrs)?);
                    }
                }
                Ok(())
            })
            .map_err(|source| {
                request_error(&format!("listing the real servers of {service}"), source)
            })?;
        Ok(destinations)
    }

    /// Applies `changes` in order. All are tried; the error lists those the
    /// kernel refused.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
        let family_id = self.family_id;
        let messages = changes.iter().map(|change| {
            let mut message = GenlMessage::from_payload(change.to_message());
            message.set_resolved_family_id(family_id);
            message
        });
        let failures = self.socket.batch(messages, 0)?;
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Changes(
            failures
                .into_iter()
                .map(|(index, errno)| (changes[index].clone(), io::Error::from_raw_os_error(errno)))
                .collect(),
        ))
    }
}

fn resolve_family(socket: &mut NetlinkSocket) -> Result<u16, Error> {
    let request = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_string())],
    });
    let mut family_id = None;
    let result = socket.request(request, 0, |reply: GenlMessage<GenlCtrl>| {
        for nla in reply.payload.nlas {
            if let GenlCtrlAttrs::FamilyId(id) = nla {
                family_id = Some(id);
            }
        }
        Ok(())
    });
    match result {
        Err(e) if e.errno() == Some(libc::ENOENT) => Err(Error::Unavailable),
        Err(e) => Err(request_error("resolving the IPVS netlink family", e)),
        Ok(()) => family_id.ok_or(Error::Unavailable),
    }
}

fn request_error(request: &str, source: socket::Error) -> Error {
    Error::Request {
        request: request.to_string(),
        source,
    }
}
