//! A blocking netlink socket that sends requests in batches and reads
//! replies and dumps, for any netlink protocol (generic for IPVS, route for
//! `kube-ipvs0`).
//!
//! A batch is many requests in one `sendmsg`, which the kernel handles one
//! after the other (a failed one does not stop the rest). Only failures are
//! answered, plus an acknowledgement of the batch's last request, so a
//! batch costs one send and, when all goes well, one receive.

use std::io;
use std::num::NonZeroI32;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// Requests per batch: the failures of one batch must fit the socket's
/// receive buffer (about 1 KiB of it each).
const BATCH_REQUESTS: usize = 128;
/// Big enough for the largest datagram of a dump (32 KiB).
const RECEIVE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed, or the kernel refused the request (its errno).
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("netlink reply: {0}")]
    Decode(#[from] DecodeError),
}

impl Error {
    /// The errno of a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Decode(_) => None,
        }
    }
}

/// A socket connected to the kernel for one netlink protocol.
pub struct NetlinkSocket {
    socket: Socket,
    next_sequence: u32,
    send_buffer: Vec<u8>,
    receive_buffer: Vec<u8>,
}

impl NetlinkSocket {
    /// Opens a socket of `protocol` (`netlink_sys::protocols::*`).
    pub fn open(protocol: isize) -> io::Result<NetlinkSocket> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Acknowledgements without a copy of the request: smaller replies.
        socket.set_cap_ack(true)?;
        Ok(NetlinkSocket {
            socket,
            next_sequence: 1,
            send_buffer: Vec::new(),
            receive_buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Sends `requests` (each with `flags` besides `NLM_F_REQUEST`) in
    /// batches; returns the index and errno of each one the kernel refused.
    pub fn batch<T: NetlinkSerializable>(
        &mut self,
        requests: impl IntoIterator<Item = T>,
        flags: u16,
    ) -> Result<Vec<(usize, i32)>, Error> {
        let mut requests = requests.into_iter().peekable();
        let mut failures = Vec::new();
        let mut offset = 0;
        while requests.peek().is_some() {
            self.send_buffer.clear();
            let first = self.next_sequence;
            let mut count = 0;
            while count < BATCH_REQUESTS
                && let Some(request) = requests.next()
            {
                let last = count + 1 == BATCH_REQUESTS || requests.peek().is_none();
                self.append(request, flags | if last { NLM_F_ACK } else { 0 });
                count += 1;
            }
            self.socket.send(&self.send_buffer, 0)?;
            for (index, errno) in self.collect_failures(first, count)? {
                failures.push((offset + index, errno));
            }
            offset += count;
        }
        Ok(failures)
    }

    /// Reads the answers to the `count` requests from sequence number
    /// `first` on, until the last one's.
    fn collect_failures(&mut self, first: u32, count: usize) -> Result<Vec<(usize, i32)>, Error> {
        let last = first.wrapping_add(count as u32 - 1);
        let mut failures = Vec::new();
        let mut done = false;
        while !done {
            self.receive(|header, payload: NetlinkPayload<NoReply>| {
                if let NetlinkPayload::Error(error) = payload {
                    let sequence = header.sequence_number;
                    let index = sequence.wrapping_sub(first) as usize;
                    if let Some(code) = error.code
                        && index < count
                    {
                        failures.push((index, errno(code)));
                    }
                    done |= sequence == last;
                }
                Ok(true)
            })?;
        }
        Ok(failures)
    }

    /// Sends one request and hands each reply to `on_reply` until the
    /// kernel is done: the end of a dump (`NLM_F_DUMP` in `flags`), or the
    /// acknowledgement. A refusal is an [`Error::Io`] with its errno.
    pub fn request<Req, Rep>(
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
        // A dump ends with NLMSG_DONE; anything else is acknowledged.
        let ack = if flags & NLM_F_DUMP == NLM_F_DUMP {
            0
        } else {
            NLM_F_ACK
        };
        let sequence = self.append(request, flags | ack);
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

    /// Serializes `payload` as one request at the end of the send buffer.
    fn append<T: NetlinkSerializable>(&mut self, payload: T, flags: u16) -> u32 {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        let start = self.send_buffer.len();
        encode(&mut self.send_buffer, payload, flags, sequence);
        debug_assert_eq!(self.send_buffer.len() % 4, start % 4);
        sequence
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

/// Appends `payload` to `buffer` as one netlink request.
fn encode<T: NetlinkSerializable>(buffer: &mut Vec<u8>, payload: T, flags: u16, sequence: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    message.finalize();
    let start = buffer.len();
    buffer.resize(start + align(message.buffer_len()), 0);
    message.serialize(&mut buffer[start..]);
}

/// The replies a batch reads: only errors and acknowledgements, whatever
/// the protocol.
#[derive(Debug)]
struct NoReply;

impl NetlinkDeserializable for NoReply {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, _payload: &[u8]) -> Result<Self, DecodeError> {
        Err(format!(
            "unexpected reply of type {} to a batch",
            header.message_type
        )
        .into())
    }
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// A netlink error code is a negated errno.
fn errno(code: NonZeroI32) -> i32 {
    code.get().saturating_neg()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
    use netlink_packet_generic::GenlMessage;

    use super::*;
    use crate::ipvs::netlink::message::{Command, IpvsMessage};

    #[test]
    fn a_request_carries_its_family_flags_and_sequence_in_the_headers() {
        let mut message = GenlMessage::from_payload(IpvsMessage {
            command: Command::Flush,
            attrs: Vec::new(),
        });
        message.set_resolved_family_id(0x1d);
        let mut buffer = Vec::new();
        encode(&mut buffer, message, NLM_F_CREATE | NLM_F_EXCL, 7);

        let mut expected = Vec::new();
        expected.extend_from_slice(&20u32.to_ne_bytes()); // nlmsghdr + genlmsghdr
        expected.extend_from_slice(&0x1du16.to_ne_bytes()); // the resolved family
        expected.extend_from_slice(&(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
        expected.extend_from_slice(&7u32.to_ne_bytes());
        expected.extend_from_slice(&0u32.to_ne_bytes()); // the kernel fills the port
        expected.extend_from_slice(&[17, 1, 0, 0]); // IPVS_CMD_FLUSH, version 1
        assert_eq!(buffer, expected);
    }

    #[test]
    fn requests_follow_each_other_aligned() {
        let mut buffer = Vec::new();
        for sequence in 1..=3 {
            let message = GenlMessage::from_payload(IpvsMessage {
                command: Command::GetInfo,
                attrs: Vec::new(),
            });
            encode(&mut buffer, message, 0, sequence);
        }
        assert_eq!(buffer.len(), 60);
        let third = NetlinkBuffer::new_checked(&buffer[40..]).unwrap();
        assert_eq!(third.sequence_number(), 3);
    }
}
