//! The wire format of the kernel's `IPVS` generic netlink family
//! (`include/uapi/linux/ip_vs.h`): commands and their attributes. Only
//! what the proxy uses is typed; other attributes are kept raw.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, parse_string, parse_u16, parse_u16_be, parse_u32,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// The family's name, resolved to an id through the generic netlink
/// controller.
pub const FAMILY_NAME: &str = "IPVS";
const FAMILY_VERSION: u8 = 1;

/// `IPVS_CMD_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    NewService = 1,
    SetService = 2,
    DelService = 3,
    GetService = 4,
    NewDest = 5,
    SetDest = 6,
    DelDest = 7,
    GetDest = 8,
    /// The kernel's reply to `GetInfo`.
    SetInfo = 14,
    GetInfo = 15,
    Flush = 17,
}

impl TryFrom<u8> for Command {
    type Error = DecodeError;

    fn try_from(value: u8) -> Result<Self, DecodeError> {
        Ok(match value {
            1 => Command::NewService,
            2 => Command::SetService,
            3 => Command::DelService,
            4 => Command::GetService,
            5 => Command::NewDest,
            6 => Command::SetDest,
            7 => Command::DelDest,
            8 => Command::GetDest,
            14 => Command::SetInfo,
            15 => Command::GetInfo,
            17 => Command::Flush,
            other => return Err(format!("unknown IPVS command {other}").into()),
        })
    }
}

/// One IPVS request or reply: a command and its top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub command: Command,
    pub attrs: Vec<Attr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.command as u8
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let command = Command::try_from(header.cmd)?;
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| Attr::parse(command, &nla)))
            .collect::<Result<_, _>>()?;
        Ok(IpvsMessage { command, attrs })
    }
}

/// A top-level attribute (`IPVS_CMD_ATTR_*`, or `IPVS_INFO_ATTR_*` in the
/// reply to `GetInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    Service(Vec<ServiceAttr>),
    Dest(Vec<DestAttr>),
    InfoVersion(u32),
    InfoConnTableSize(u32),
    Other(DefaultNla),
}

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const INFO_ATTR_VERSION: u16 = 1;
const INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

impl Attr {
    fn parse(command: Command, nla: &NlaBuffer<&[u8]>) -> Result<Attr, DecodeError> {
        let value = nla.value();
        Ok(match (command, nla.kind()) {
            (Command::SetInfo, INFO_ATTR_VERSION) => Attr::InfoVersion(parse_u32(value)?),
            (Command::SetInfo, INFO_ATTR_CONN_TAB_SIZE) => {
                Attr::InfoConnTableSize(parse_u32(value)?)
            }
            (Command::SetInfo, _) => Attr::Other(DefaultNla::parse(nla)?),
            (_, CMD_ATTR_SERVICE) => Attr::Service(parse_nested(value, ServiceAttr::parse)?),
            (_, CMD_ATTR_DEST) => Attr::Dest(parse_nested(value, DestAttr::parse)?),
            _ => Attr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Service(attrs) => attrs.as_slice().buffer_len(),
            Attr::Dest(attrs) => attrs.as_slice().buffer_len(),
            Attr::InfoVersion(_) | Attr::InfoConnTableSize(_) => 4,
            Attr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Service(_) => CMD_ATTR_SERVICE,
            Attr::Dest(_) => CMD_ATTR_DEST,
            Attr::InfoVersion(_) => INFO_ATTR_VERSION,
            Attr::InfoConnTableSize(_) => INFO_ATTR_CONN_TAB_SIZE,
            Attr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Service(attrs) => attrs.as_slice().emit(buffer),
            Attr::Dest(attrs) => attrs.as_slice().emit(buffer),
            Attr::InfoVersion(v) | Attr::InfoConnTableSize(v) => put(buffer, &v.to_ne_bytes()),
            Attr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

/// An address as the kernel carries it: `union nf_inet_addr`, 16 bytes, of
/// which an IPv4 address uses the first 4. Its family is a sibling
/// attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    fn parse(value: &[u8]) -> Result<InetAddr, DecodeError> {
        if value.len() > 16 {
            return Err(format!("address of {} bytes", value.len()).into());
        }
        let mut bytes = [0; 16];
        bytes[..value.len()].copy_from_slice(value);
        Ok(InetAddr(bytes))
    }
}

/// `IPVS_SVC_ATTR_*`: a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAttr {
    AddressFamily(u16),
    Protocol(u16),
    Addr(InetAddr),
    /// Host order here, network order on the wire.
    Port(u16),
    Fwmark(u32),
    Scheduler(String),
    Flags {
        flags: u32,
        mask: u32,
    },
    /// Persistence timeout, seconds.
    Timeout(u32),
    Netmask(u32),
    Other(DefaultNla),
}

const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;

impl ServiceAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<ServiceAttr, DecodeError> {
        let value = nla.value();
        Ok(match nla.kind() {
            SVC_ATTR_AF => ServiceAttr::AddressFamily(parse_u16(value)?),
            SVC_ATTR_PROTOCOL => ServiceAttr::Protocol(parse_u16(value)?),
            SVC_ATTR_ADDR => ServiceAttr::Addr(InetAddr::parse(value)?),
            SVC_ATTR_PORT => ServiceAttr::Port(parse_u16_be(value)?),
            SVC_ATTR_FWMARK => ServiceAttr::Fwmark(parse_u32(value)?),
            SVC_ATTR_SCHED_NAME => ServiceAttr::Scheduler(parse_string(value)?),
            SVC_ATTR_FLAGS => {
                if value.len() < 8 {
                    return Err(format!("service flags of {} bytes", value.len()).into());
                }
                ServiceAttr::Flags {
                    flags: parse_u32(&value[..4])?,
                    mask: parse_u32(&value[4..8])?,
                }
            }
            SVC_ATTR_TIMEOUT => ServiceAttr::Timeout(parse_u32(value)?),
            SVC_ATTR_NETMASK => ServiceAttr::Netmask(parse_u32(value)?),
            _ => ServiceAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for ServiceAttr {
    fn value_len(&self) -> usize {
        match self {
            ServiceAttr::AddressFamily(_) | ServiceAttr::Protocol(_) | ServiceAttr::Port(_) => 2,
            ServiceAttr::Addr(_) => 16,
            ServiceAttr::Fwmark(_) | ServiceAttr::Timeout(_) | ServiceAttr::Netmask(_) => 4,
            ServiceAttr::Scheduler(name) => name.len() + 1,
            ServiceAttr::Flags { .. } => 8,
            ServiceAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ServiceAttr::AddressFamily(_) => SVC_ATTR_AF,
            ServiceAttr::Protocol(_) => SVC_ATTR_PROTOCOL,
            ServiceAttr::Addr(_) => SVC_ATTR_ADDR,
            ServiceAttr::Port(_) => SVC_ATTR_PORT,
            ServiceAttr::Fwmark(_) => SVC_ATTR_FWMARK,
            ServiceAttr::Scheduler(_) => SVC_ATTR_SCHED_NAME,
            ServiceAttr::Flags { .. } => SVC_ATTR_FLAGS,
            ServiceAttr::Timeout(_) => SVC_ATTR_TIMEOUT,
            ServiceAttr::Netmask(_) => SVC_ATTR_NETMASK,
            ServiceAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            ServiceAttr::AddressFamily(v) | ServiceAttr::Protocol(v) => {
                put(buffer, &v.to_ne_bytes())
            }
            ServiceAttr::Port(v) => put(buffer, &v.to_be_bytes()),
            ServiceAttr::Addr(addr) => put(buffer, &addr.0),
            ServiceAttr::Fwmark(v) | ServiceAttr::Timeout(v) | ServiceAttr::Netmask(v) => {
                put(buffer, &v.to_ne_bytes())
            }
            ServiceAttr::Scheduler(name) => {
                put(buffer, name.as_bytes());
                buffer[name.len()] = 0;
            }
            ServiceAttr::Flags { flags, mask } => {
                put(buffer, &flags.to_ne_bytes());
                put(&mut buffer[4..], &mask.to_ne_bytes());
            }
            ServiceAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

/// `IPVS_DEST_ATTR_*`: a real server of a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    Addr(InetAddr),
    /// Host order here, network order on the wire.
    Port(u16),
    ForwardMethod(u32),
    Weight(u32),
    UpperThreshold(u32),
    LowerThreshold(u32),
    ActiveConnections(u32),
    InactiveConnections(u32),
    PersistentConnections(u32),
    AddressFamily(u16),
    Other(DefaultNla),
}

const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_PERSIST_CONNS: u16 = 9;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;

impl DestAttr {
    fn parse(nla: &NlaBuffer<&[u8]>) -> Result<DestAttr, DecodeError> {
        let value = nla.value();
        Ok(match nla.kind() {
            DEST_ATTR_ADDR => DestAttr::Addr(InetAddr::parse(value)?),
            DEST_ATTR_PORT => DestAttr::Port(parse_u16_be(value)?),
            DEST_ATTR_FWD_METHOD => DestAttr::ForwardMethod(parse_u32(value)?),
            DEST_ATTR_WEIGHT => DestAttr::Weight(parse_u32(value)?),
            DEST_ATTR_U_THRESH => DestAttr::UpperThreshold(parse_u32(value)?),
            DEST_ATTR_L_THRESH => DestAttr::LowerThreshold(parse_u32(value)?),
            DEST_ATTR_ACTIVE_CONNS => DestAttr::ActiveConnections(parse_u32(value)?),
            DEST_ATTR_INACT_CONNS => DestAttr::InactiveConnections(parse_u32(value)?),
            DEST_ATTR_PERSIST_CONNS => DestAttr::PersistentConnections(parse_u32(value)?),
            DEST_ATTR_ADDR_FAMILY => DestAttr::AddressFamily(parse_u16(value)?),
            _ => DestAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_) | DestAttr::AddressFamily(_) => 2,
            DestAttr::ForwardMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UpperThreshold(_)
            | DestAttr::LowerThreshold(_)
            | DestAttr::ActiveConnections(_)
            | DestAttr::InactiveConnections(_)
            | DestAttr::PersistentConnections(_) => 4,
            DestAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => DEST_ATTR_ADDR,
            DestAttr::Port(_) => DEST_ATTR_PORT,
            DestAttr::ForwardMethod(_) => DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => DEST_ATTR_WEIGHT,
            DestAttr::UpperThreshold(_) => DEST_ATTR_U_THRESH,
            DestAttr::LowerThreshold(_) => DEST_ATTR_L_THRESH,
            DestAttr::ActiveConnections(_) => DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactiveConnections(_) => DEST_ATTR_INACT_CONNS,
            DestAttr::PersistentConnections(_) => DEST_ATTR_PERSIST_CONNS,
            DestAttr::AddressFamily(_) => DEST_ATTR_ADDR_FAMILY,
            DestAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DestAttr::Addr(addr) => put(buffer, &addr.0),
            DestAttr::Port(v) => put(buffer, &v.to_be_bytes()),
            DestAttr::AddressFamily(v) => put(buffer, &v.to_ne_bytes()),
            DestAttr::ForwardMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UpperThreshold(v)
            | DestAttr::LowerThreshold(v)
            | DestAttr::ActiveConnections(v)
            | DestAttr::InactiveConnections(v)
            | DestAttr::PersistentConnections(v) => put(buffer, &v.to_ne_bytes()),
            DestAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

fn parse_nested<T>(
    buf: &[u8],
    parse: fn(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|nla| parse(&nla)))
        .collect()
}

/// Writes `bytes` at the start of `buffer`, which `Nla::value_len` sized.
fn put(buffer: &mut [u8], bytes: &[u8]) {
    buffer[..bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute as the kernel lays it out: length (header included,
    /// padding not), type, value, zero padding to 4 bytes.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn emitted(message: &IpvsMessage) -> Vec<u8> {
        let mut out = vec![0xAA; message.buffer_len()];
        message.emit(&mut out);
        out
    }

    fn addr_v4(octets: [u8; 4]) -> InetAddr {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&octets);
        InetAddr(bytes)
    }

    #[test]
    fn a_new_service_is_laid_out_as_ip_vs_h_says() {
        let message = IpvsMessage {
            command: Command::NewService,
            attrs: vec![Attr::Service(vec![
                ServiceAttr::AddressFamily(2),
                ServiceAttr::Protocol(6),
                ServiceAttr::Addr(addr_v4([10, 96, 0, 10])),
                ServiceAttr::Port(8080),
                ServiceAttr::Scheduler("rr".into()),
                ServiceAttr::Flags {
                    flags: 1,
                    mask: u32::MAX,
                },
                ServiceAttr::Timeout(10800),
                ServiceAttr::Netmask(u32::MAX),
            ])],
        };
        let mut flags = 1u32.to_ne_bytes().to_vec();
        flags.extend_from_slice(&u32::MAX.to_ne_bytes());
        let mut addr = vec![10, 96, 0, 10];
        addr.resize(16, 0);
        let inner = [
            nla(1, &2u16.to_ne_bytes()),
            nla(2, &6u16.to_ne_bytes()),
            nla(3, &addr),
            nla(4, &[0x1f, 0x90]), // 8080, network order
            nla(6, b"rr\0"),
            nla(7, &flags),
            nla(8, &10800u32.to_ne_bytes()),
            nla(9, &[0xff; 4]),
        ]
        .concat();
        assert_eq!(emitted(&message), nla(1, &inner));
        assert_eq!(message.command(), 1);
        assert_eq!(message.version(), 1);
    }

    #[test]
    fn a_destination_request_nests_the_service_then_the_server() {
        let message = IpvsMessage {
            command: Command::NewDest,
            attrs: vec![
                Attr::Service(vec![ServiceAttr::Port(80)]),
                Attr::Dest(vec![
                    DestAttr::Addr(addr_v4([10, 244, 1, 5])),
                    DestAttr::Port(80),
                    DestAttr::ForwardMethod(0),
                    DestAttr::Weight(1),
                    DestAttr::AddressFamily(2),
                ]),
            ],
        };
        let mut addr = vec![10, 244, 1, 5];
        addr.resize(16, 0);
        let dest = [
            nla(1, &addr),
            nla(2, &[0, 80]),
            nla(3, &0u32.to_ne_bytes()),
            nla(4, &1u32.to_ne_bytes()),
            nla(11, &2u16.to_ne_bytes()),
        ]
        .concat();
        let expected = [nla(1, &nla(4, &[0, 80])), nla(2, &dest)].concat();
        assert_eq!(emitted(&message), expected);
    }

    #[test]
    fn messages_parse_back_to_what_was_emitted() {
        let message = IpvsMessage {
            command: Command::SetDest,
            attrs: vec![
                Attr::Service(vec![
                    ServiceAttr::AddressFamily(10),
                    ServiceAttr::Protocol(17),
                    ServiceAttr::Addr(InetAddr([0xfd; 16])),
                    ServiceAttr::Port(53),
                ]),
                Attr::Dest(vec![
                    DestAttr::Addr(InetAddr([0xfe; 16])),
                    DestAttr::Port(5353),
                    DestAttr::Weight(0),
                    DestAttr::ActiveConnections(3),
                    DestAttr::InactiveConnections(7),
                ]),
            ],
        };
        let header = GenlHeader {
            cmd: message.command(),
            version: 1,
        };
        let parsed = IpvsMessage::parse_with_param(&emitted(&message), header).unwrap();
        assert_eq!(parsed, message);
    }

    #[test]
    fn a_kernel_dump_entry_parses_with_its_16_byte_address_and_unknown_attributes() {
        let mut addr = vec![192, 168, 56, 10];
        addr.resize(16, 0);
        let stats = nla(1, &5u32.to_ne_bytes()); // nested stats, kept raw
        let service = [
            nla(1, &2u16.to_ne_bytes()),
            nla(3, &addr),
            nla(6, b"wrr\0"),
            nla(7, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            nla(10, &stats),
        ]
        .concat();
        let header = GenlHeader { cmd: 1, version: 1 };
        let parsed = IpvsMessage::parse_with_param(&nla(1, &service), header).unwrap();
        let Attr::Service(attrs) = &parsed.attrs[0] else {
            panic!("{parsed:?}")
        };
        assert_eq!(attrs[1], ServiceAttr::Addr(addr_v4([192, 168, 56, 10])));
        assert_eq!(attrs[2], ServiceAttr::Scheduler("wrr".into()));
        assert_eq!(
            attrs[3],
            ServiceAttr::Flags {
                flags: 3,
                mask: u32::MAX
            }
        );
        assert!(matches!(&attrs[4], ServiceAttr::Other(nla) if nla.kind() == 10));
    }

    #[test]
    fn the_info_reply_is_read_as_info() {
        let payload = [
            nla(1, &0x0001_0201u32.to_ne_bytes()),
            nla(2, &4096u32.to_ne_bytes()),
        ]
        .concat();
        let header = GenlHeader {
            cmd: 14,
            version: 1,
        };
        let parsed = IpvsMessage::parse_with_param(&payload, header).unwrap();
        assert_eq!(
            parsed.attrs,
            vec![
                Attr::InfoVersion(0x0001_0201),
                Attr::InfoConnTableSize(4096)
            ]
        );
    }

    #[test]
    fn truncated_or_oversized_attributes_are_errors() {
        let header = GenlHeader { cmd: 1, version: 1 };
        let short_port = nla(1, &nla(4, &[80]));
        assert!(IpvsMessage::parse_with_param(&short_port, header).is_err());
        let long_addr = nla(1, &nla(3, &[1; 20]));
        assert!(IpvsMessage::parse_with_param(&long_addr, header).is_err());
        let cut = &nla(1, &nla(2, &6u16.to_ne_bytes()))[..6];
        assert!(IpvsMessage::parse_with_param(cut, header).is_err());
    }
}
