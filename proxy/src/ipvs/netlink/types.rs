//! Virtual services and real servers as the proxy programs them, and their
//! translation to and from the family's attributes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use netlink_packet_core::DecodeError;

use super::message::{Attr, Command, DestAttr, InetAddr, IpvsMessage, ServiceAttr};

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
/// `IP_VS_SVC_F_PERSISTENT`.
const SVC_F_PERSISTENT: u32 = 0x1;
/// `IP_VS_CONN_F_MASQ`: real servers are reached through NAT, as
/// kube-proxy does.
const CONN_F_MASQ: u32 = 0;

/// The transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn number(self) -> u16 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u16,
            Protocol::Udp => libc::IPPROTO_UDP as u16,
            Protocol::Sctp => libc::IPPROTO_SCTP as u16,
        }
    }

    fn from_number(number: u16) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.number() == number)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// How a virtual service picks a real server (`--ipvs-scheduler`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheduler {
    #[default]
    RoundRobin,
    LeastConnection,
    WeightedRoundRobin,
    SourceHashing,
    /// One the proxy does not program, seen in the kernel's table.
    Other(String),
}

impl Scheduler {
    /// The kernel's name (`ip_vs_<name>` is its module).
    pub fn name(&self) -> &str {
        match self {
            Scheduler::RoundRobin => "rr",
            Scheduler::LeastConnection => "lc",
            Scheduler::WeightedRoundRobin => "wrr",
            Scheduler::SourceHashing => "sh",
            Scheduler::Other(name) => name,
        }
    }

    fn from_kernel(name: String) -> Scheduler {
        name.parse().unwrap_or(Scheduler::Other(name))
    }
}

impl FromStr for Scheduler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "rr" => Scheduler::RoundRobin,
            "lc" => Scheduler::LeastConnection,
            "wrr" => Scheduler::WeightedRoundRobin,
            "sh" => Scheduler::SourceHashing,
            other => {
                return Err(format!(
                    "unknown IPVS scheduler {other:?} (rr, lc, wrr or sh)"
                ));
            }
        })
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What names a virtual service: protocol, address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub protocol: Protocol,
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(addr) => write!(f, "{} {addr}:{}", self.protocol, self.port),
            IpAddr::V6(addr) => write!(f, "{} [{addr}]:{}", self.protocol, self.port),
        }
    }
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VirtualService {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    /// Persistence (sessionAffinity ClientIP): a client sticks to its real
    /// server for this many seconds after its last connection.
    pub persistence_timeout: Option<u32>,
}

/// A real server of a virtual service, reached through NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub addr: IpAddr,
    pub port: u16,
    /// 0 takes no new connections and keeps the established ones.
    pub weight: u32,
}

/// A real server as the kernel reports it, with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestinationStatus {
    pub destination: Destination,
    pub active_connections: u32,
    pub inactive_connections: u32,
}

/// One change to the kernel's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddService(VirtualService),
    UpdateService(VirtualService),
    DeleteService(ServiceKey),
    AddDestination(ServiceKey, Destination),
    UpdateDestination(ServiceKey, Destination),
    DeleteDestination(ServiceKey, Destination),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddService(s) => write!(f, "adding virtual service {}", s.key),
            Change::UpdateService(s) => write!(f, "updating virtual service {}", s.key),
            Change::DeleteService(k) => write!(f, "deleting virtual service {k}"),
            Change::AddDestination(k, d) => {
                write!(f, "adding real server {}:{} to {k}", d.addr, d.port)
            }
            Change::UpdateDestination(k, d) => {
                write!(f, "updating real server {}:{} of {k}", d.addr, d.port)
            }
            Change::DeleteDestination(k, d) => {
                write!(f, "deleting real server {}:{} of {k}", d.addr, d.port)
            }
        }
    }
}

impl Change {
    pub(super) fn to_message(&self) -> IpvsMessage {
        let (command, attrs) = match self {
            Change::AddService(s) => (Command::NewService, vec![Attr::Service(s.attrs())]),
            Change::UpdateService(s) => (Command::SetService, vec![Attr::Service(s.attrs())]),
            Change::DeleteService(k) => (Command::DelService, vec![Attr::Service(k.attrs())]),
            Change::AddDestination(k, d) => (
                Command::NewDest,
                vec![Attr::Service(k.attrs()), Attr::Dest(d.attrs())],
            ),
            Change::UpdateDestination(k, d) => (
                Command::SetDest,
                vec![Attr::Service(k.attrs()), Attr::Dest(d.attrs())],
            ),
            Change::DeleteDestination(k, d) => (
                Command::DelDest,
                vec![Attr::Service(k.attrs()), Attr::Dest(d.key_attrs())],
            ),
        };
        IpvsMessage { command, attrs }
    }
}

fn family(addr: IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn inet_addr(addr: IpAddr) -> InetAddr {
    let mut bytes = [0; 16];
    match addr {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    InetAddr(bytes)
}

fn ip_addr(family: u16, addr: InetAddr) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => {
            let [a, b, c, d, ..] = addr.0;
            Ok(IpAddr::from([a, b, c, d]))
        }
        AF_INET6 => Ok(IpAddr::from(addr.0)),
        other => Err(format!("address family {other}").into()),
    }
}

impl ServiceKey {
    pub(super) fn attrs(&self) -> Vec<ServiceAttr> {
        vec![
            ServiceAttr::AddressFamily(family(self.addr)),
            ServiceAttr::Protocol(self.protocol.number()),
            ServiceAttr::Addr(inet_addr(self.addr)),
            ServiceAttr::Port(self.port),
        ]
    }
}

impl VirtualService {
    fn attrs(&self) -> Vec<ServiceAttr> {
        let (flags, timeout) = match self.persistence_timeout {
            Some(timeout) => (SVC_F_PERSISTENT, timeout),
            None => (0, 0),
        };
        // Persistence groups clients by address: one client, one group.
        let netmask = match self.key.addr {
            IpAddr::V4(_) => u32::MAX,
            IpAddr::V6(_) => 128,
        };
        let mut attrs = self.key.attrs();
        attrs.extend([
            ServiceAttr::Scheduler(self.scheduler.name().to_string()),
            ServiceAttr::Flags {
                flags,
                mask: u32::MAX,
            },
            ServiceAttr::Timeout(timeout),
            ServiceAttr::Netmask(netmask),
        ]);
        attrs
    }

    /// A virtual service from a dump; `None` for one keyed by firewall mark.
    pub(super) fn from_attrs(attrs: &[ServiceAttr]) -> Result<Option<VirtualService>, DecodeError> {
        let (mut af, mut protocol, mut addr, mut port) = (None, None, None, None);
        let (mut scheduler, mut flags, mut timeout) = (None, 0, 0);
        for attr in attrs {
            match attr {
                ServiceAttr::AddressFamily(v) => af = Some(*v),
                ServiceAttr::Protocol(v) => protocol = Some(*v),
                ServiceAttr::Addr(v) => addr = Some(*v),
                ServiceAttr::Port(v) => port = Some(*v),
                ServiceAttr::Fwmark(mark) if *mark != 0 => return Ok(None),
                ServiceAttr::Scheduler(name) => scheduler = Some(name.clone()),
                ServiceAttr::Flags { flags: f, .. } => flags = *f,
                ServiceAttr::Timeout(v) => timeout = *v,
                _ => {}
            }
        }
        let (Some(af), Some(protocol), Some(addr), Some(port)) = (af, protocol, addr, port) else {
            return Err("virtual service without family, protocol, address or port".into());
        };
        let protocol = Protocol::from_number(protocol)
            .ok_or_else(|| DecodeError::from(format!("protocol {protocol}")))?;
        Ok(Some(VirtualService {
            key: ServiceKey {
                protocol,
                addr: ip_addr(af, addr)?,
                port,
            },
            scheduler: Scheduler::from_kernel(scheduler.unwrap_or_default()),
            persistence_timeout: (flags & SVC_F_PERSISTENT != 0).then_some(timeout),
        }))
    }
}

impl Destination {
    fn key_attrs(&self) -> Vec<DestAttr> {
        vec![
            DestAttr::AddressFamily(family(self.addr)),
            DestAttr::Addr(inet_addr(self.addr)),
            DestAttr::Port(self.port),
        ]
    }

    fn attrs(&self) -> Vec<DestAttr> {
        let mut attrs = self.key_attrs();
        attrs.extend([
            DestAttr::ForwardMethod(CONN_F_MASQ),
            DestAttr::Weight(self.weight),
            DestAttr::UpperThreshold(0),
            DestAttr::LowerThreshold(0),
        ]);
        attrs
    }
}

impl DestinationStatus {
    /// A real server from a dump of a service of family `service_family`
    /// (older kernels do not report the server's own).
    pub(super) fn from_attrs(
        service_family: u16,
        attrs: &[DestAttr],
    ) -> Result<DestinationStatus, DecodeError> {
        let mut af = service_family;
        let (mut addr, mut port, mut weight) = (None, None, 0);
        let (mut active, mut inactive) = (0, 0);
        for attr in attrs {
            match attr {
                DestAttr::AddressFamily(v) => af = *v,
                DestAttr::Addr(v) => addr = Some(*v),
                DestAttr::Port(v) => port = Some(*v),
                DestAttr::Weight(v) => weight = *v,
                DestAttr::ActiveConnections(v) => active = *v,
                DestAttr::InactiveConnections(v) => inactive = *v,
                _ => {}
            }
        }
        let (Some(addr), Some(port)) = (addr, port) else {
            return Err("real server without address or port".into());
        };
        Ok(DestinationStatus {
            destination: Destination {
                addr: ip_addr(af, addr)?,
                port,
                weight,
            },
            active_connections: active,
            inactive_connections: inactive,
        })
    }
}

pub(super) fn service_family(key: &ServiceKey) -> u16 {
    family(key.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str, port: u16) -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            addr: addr.parse().unwrap(),
            port,
        }
    }

    fn service_attrs(message: &IpvsMessage) -> &[ServiceAttr] {
        match &message.attrs[0] {
            Attr::Service(attrs) => attrs,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn session_affinity_becomes_a_persistent_service_of_one_client_per_group() {
        let service = VirtualService {
            key: key("10.96.0.10", 80),
            scheduler: Scheduler::RoundRobin,
            persistence_timeout: Some(10800),
        };
        let message = Change::AddService(service.clone()).to_message();
        assert_eq!(message.command, Command::NewService);
        let attrs = service_attrs(&message);
        assert!(attrs.contains(&ServiceAttr::Flags {
            flags: SVC_F_PERSISTENT,
            mask: u32::MAX
        }));
        assert!(attrs.contains(&ServiceAttr::Timeout(10800)));
        assert!(attrs.contains(&ServiceAttr::Netmask(u32::MAX)));
        assert_eq!(VirtualService::from_attrs(attrs).unwrap(), Some(service));
    }

    #[test]
    fn a_service_without_affinity_clears_the_persistent_flag() {
        let service = VirtualService {
            key: key("fd00::10", 443),
            scheduler: Scheduler::SourceHashing,
            persistence_timeout: None,
        };
        let message = Change::UpdateService(service.clone()).to_message();
        assert_eq!(message.command, Command::SetService);
        let attrs = service_attrs(&message);
        assert!(attrs.contains(&ServiceAttr::Flags {
            flags: 0,
            mask: u32::MAX
        }));
        assert!(attrs.contains(&ServiceAttr::AddressFamily(AF_INET6)));
        assert!(attrs.contains(&ServiceAttr::Netmask(128)));
        assert_eq!(VirtualService::from_attrs(attrs).unwrap(), Some(service));
    }

    #[test]
    fn deleting_names_only_the_key() {
        let k = key("10.96.0.1", 443);
        let message = Change::DeleteService(k).to_message();
        assert_eq!(message.command, Command::DelService);
        assert_eq!(service_attrs(&message), k.attrs().as_slice());

        let server = Destination {
            addr: "10.244.1.5".parse().unwrap(),
            port: 8443,
            weight: 1,
        };
        let message = Change::DeleteDestination(k, server).to_message();
        assert_eq!(message.command, Command::DelDest);
        assert_eq!(message.attrs[1], Attr::Dest(server.key_attrs()));
    }

    #[test]
    fn real_servers_are_masqueraded_with_their_weight() {
        let server = Destination {
            addr: "10.244.1.5".parse().unwrap(),
            port: 8080,
            weight: 0,
        };
        let message = Change::UpdateDestination(key("10.96.0.10", 80), server).to_message();
        assert_eq!(message.command, Command::SetDest);
        let Attr::Dest(attrs) = &message.attrs[1] else {
            panic!("{message:?}")
        };
        assert!(attrs.contains(&DestAttr::ForwardMethod(CONN_F_MASQ)));
        assert!(attrs.contains(&DestAttr::Weight(0)));
    }

    #[test]
    fn a_dumped_server_reads_its_connections_and_takes_the_service_family() {
        let mut attrs = Destination {
            addr: "10.244.2.7".parse().unwrap(),
            port: 80,
            weight: 1,
        }
        .attrs();
        attrs.retain(|a| !matches!(a, DestAttr::AddressFamily(_)));
        attrs.extend([
            DestAttr::ActiveConnections(2),
            DestAttr::InactiveConnections(5),
        ]);
        let status = DestinationStatus::from_attrs(AF_INET, &attrs).unwrap();
        assert_eq!(
            status.destination.addr,
            "10.244.2.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            (status.active_connections, status.inactive_connections),
            (2, 5)
        );
    }

    #[test]
    fn firewall_mark_services_are_not_ours_and_incomplete_ones_are_errors() {
        let fwmark = [ServiceAttr::AddressFamily(AF_INET), ServiceAttr::Fwmark(7)];
        assert_eq!(VirtualService::from_attrs(&fwmark).unwrap(), None);
        let no_port = [
            ServiceAttr::AddressFamily(AF_INET),
            ServiceAttr::Protocol(6),
            ServiceAttr::Addr(inet_addr("10.0.0.1".parse().unwrap())),
        ];
        assert!(VirtualService::from_attrs(&no_port).is_err());
    }

    #[test]
    fn schedulers_parse_from_the_flag_and_keep_unknown_kernel_names() {
        for name in ["rr", "lc", "wrr", "sh"] {
            assert_eq!(name.parse::<Scheduler>().unwrap().name(), name);
        }
        assert!("mh".parse::<Scheduler>().is_err());
        assert_eq!(
            Scheduler::from_kernel("mh".into()),
            Scheduler::Other("mh".into())
        );
    }
}
