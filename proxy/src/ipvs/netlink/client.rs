//! A blocking client of the `IPVS` generic netlink family.
//!
//! Changes go to the kernel in batches: many requests in one `sendmsg`,
//! which the kernel handles one after the other (a failed one does not
//! stop the rest). Only failures are answered, plus an acknowledgement of
//! each batch's last request, so a batch costs one send and one receive.

use std::io;
use std::num::NonZeroI32;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::message::{Attr, Command, FAMILY_NAME, IpvsMessage};
use super::types::{Change, DestinationStatus, ServiceKey, VirtualService, service_family};

/// Requests per batch: the failures of one batch must fit the socket's
/// receive buffer (about 1 KiB of it each).
const BATCH_REQUESTS: usize = 128;
/// Big enough for the largest datagram of a dump (32 KiB).
const RECEIVE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this kernel has no IPVS (generic netlink family \"IPVS\" is not registered): load the \
         ip_vs module"
    )]
    Unavailable,
    #[error("IPVS netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("IPVS netlink reply: {0}")]
    Decode(#[from] DecodeError),
    #[error("{request}: {source}")]
    Request {
        request: String,
        #[source]
        source: io::Error,
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
    socket: Socket,
    family_id: u16,
    next_sequence: u32,
    send_buffer: Vec<u8>,
    receive_buffer: Vec<u8>,
}

impl Ipvs {
    /// Opens a netlink socket and resolves the `IPVS` family.
    pub fn connect() -> Result<Ipvs, Error> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Acknowledgements without a copy of the request: smaller replies.
        socket.set_cap_ack(true)?;
        let mut ipvs = Ipvs {
            socket,
            family_id: 0,
            next_sequence: 1,
            send_buffer: Vec::new(),
            receive_buffer: vec![0; RECEIVE_BUFFER],
        };
        ipvs.family_id = ipvs.resolve_family()?;
        Ok(ipvs)
    }

    fn resolve_family(&mut self) -> Result<u16, Error> {
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_string())],
        });
        let mut family_id = None;
        let result = self.request(request, NLM_F_ACK, |reply: GenlMessage<GenlCtrl>| {
            for nla in reply.payload.nlas {
                if let GenlCtrlAttrs::FamilyId(id) = nla {
                    family_id = Some(id);
                }
            }
            Ok(())
        });
        match result {
            Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => Err(Error::Unavailable),
            Err(e) => Err(e),
            Ok(()) => family_id.ok_or(Error::Unavailable),
        }
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
        self.request(request, NLM_F_ACK, |reply: GenlMessage<IpvsMessage>| {
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
        })?;
        Ok(info)
    }

    /// Every virtual service keyed by address (not by firewall mark).
    pub fn services(&mut self) -> Result<Vec<VirtualService>, Error> {
        let request = self.message(Command::GetService, Vec::new());
        let mut services = Vec::new();
        self.request(request, NLM_F_DUMP, |reply: GenlMessage<IpvsMessage>| {
            for attr in reply.payload.attrs {
                if let Attr::Service(attrs) = attr
                    && let Some(service) = VirtualService::from_attrs(&attrs)?
                {
                    services.push(service);
                }
            }
            Ok(())
        })
        .map_err(|e| with_request(e, "listing IPVS virtual services"))?;
        Ok(services)
    }

    /// The real servers of `service`, with their connection counts.
    pub fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<DestinationStatus>, Error> {
        let request = self.message(Command::GetDest, vec![Attr::Service(service.attrs())]);
        let family = service_family(service);
        let mut destinations = Vec::new();
        self.request(request, NLM_F_DUMP, |reply: GenlMessage<IpvsMessage>| {
            for attr in reply.payload.attrs {
                if let Attr::Dest(attrs) = attr {
                    destinations.push(DestinationStatus::from_attrs(family, &attrs)?);
                }
            }
            Ok(())
        })
        .map_err(|e| with_request(e, &format!("listing the real servers of {service}")))?;
        Ok(destinations)
    }

    /// Applies `changes` in order. All are tried; the error lists those the
    /// kernel refused.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
        let mut failures = Vec::new();
        for batch in changes.chunks(BATCH_REQUESTS) {
            for (index, errno) in self.apply_batch(batch)? {
                failures.push((batch[index].clone(), io::Error::from_raw_os_error(errno)));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Changes(failures))
        }
    }

    /// Sends `batch` in one datagram; returns the index and errno of each
    /// change the kernel refused.
    fn apply_batch(&mut self, batch: &[Change]) -> Result<Vec<(usize, i32)>, Error> {
        let first = self.next_sequence;
        self.send_buffer.clear();
        for (index, change) in batch.iter().enumerate() {
            let last = index + 1 == batch.len();
            let message = self.message_for(change);
            self.append(message, if last { NLM_F_ACK } else { 0 });
        }
        self.socket.send(&self.send_buffer, 0)?;

        let last = first.wrapping_add(batch.len() as u32 - 1);
        let mut failures = Vec::new();
        let mut done = false;
        while !done {
            self.receive(
                |header, payload: NetlinkPayload<GenlMessage<IpvsMessage>>| {
                    if let NetlinkPayload::Error(error) = payload {
                        let sequence = header.sequence_number;
                        let index = sequence.wrapping_sub(first) as usize;
                        if let Some(code) = error.code
                            && index < batch.len()
                        {
                            failures.push((index, errno(code)));
                        }
                        done |= sequence == last;
                    }
                    Ok(true)
                },
            )?;
        }
        Ok(failures)
    }

    fn message_for(&self, change: &Change) -> GenlMessage<IpvsMessage> {
        let mut message = GenlMessage::from_payload(change.to_message());
        message.set_resolved_family_id(self.family_id);
        message
    }

    /// Serializes `payload` as one request at the end of the send buffer.
    fn append<T: NetlinkSerializable>(&mut self, payload: T, flags: u16) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        message.finalize();
        let start = self.send_buffer.len();
        self.send_buffer.resize(start + message.buffer_len(), 0);
        message.serialize(&mut self.send_buffer[start..]);
        sequence
    }

    /// Sends one request and hands each reply to `on_reply` until the
    /// kernel is done: the end of a dump, or the acknowledgement.
    fn request<Req, Rep>(
        &mut self,
        request: Req,
        flags: u16,
        mut on_reply: impl FnMut(Rep) -> Result<(), Error>,
    ) -> Result<(), Error>
    where
        Req: NetlinkSerializable,
        Rep: NetlinkDeserializable<Error = DecodeError>,
    {
        self.send_buffer.clear();
        let sequence = self.append(request, flags);
        self.socket.send(&self.send_buffer, 0)?;
        let mut done = false;
        while !done {
            self.receive(|header, payload: NetlinkPayload<Rep>| {
                if header.sequence_number != sequence {
                    return Ok(true);
                }
                match payload {
                    NetlinkPayload::InnerMessage(reply) => on_reply(reply)?,
                    NetlinkPayload::Done(end) if end.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-end.code).into());
                    }
                    NetlinkPayload::Done(_) => done = true,
                    NetlinkPayload::Error(error) => match error.code {
                        Some(code) => return Err(io::Error::from_raw_os_error(errno(code)).into()),
                        None => done = true,
                    },
                    _ => {}
                }
                Ok(!done)
            })?;
        }
        Ok(())
    }

    /// Reads one datagram and hands each message in it to `on_message`,
    /// which returns whether to go on with the rest.
    fn receive<T>(
        &mut self,
        mut on_message: impl FnMut(NetlinkHeader, NetlinkPayload<T>) -> Result<bool, Error>,
    ) -> Result<(), Error>
    where
        T: NetlinkDeserializable<Error = DecodeError>,
    {
        let mut buffer = &mut self.receive_buffer[..];
        let size = self.socket.recv(&mut buffer, 0)?;
        if size > RECEIVE_BUFFER {
            return Err(DecodeError::from(format!("a netlink datagram of {size} bytes")).into());
        }
        let mut datagram = &self.receive_buffer[..size];
        while !datagram.is_empty() {
            let length = NetlinkBuffer::new_checked(datagram)?.length() as usize;
            let message = NetlinkMessage::<T>::deserialize(&datagram[..length])?;
            if !on_message(message.header, message.payload)? {
                break;
            }
            datagram = &datagram[align(length).min(datagram.len())..];
        }
        Ok(())
    }
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// A netlink error code is a negated errno.
fn errno(code: NonZeroI32) -> i32 {
    code.get().saturating_neg()
}

fn with_request(error: Error, request: &str) -> Error {
    match error {
        Error::Io(source) => Error::Request {
            request: request.to_string(),
            source,
        },
        other => other,
    }
}
