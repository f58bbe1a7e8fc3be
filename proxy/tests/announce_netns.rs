//! The load-balancer announcer's network side, as root, in network
//! namespaces: moving an IP from one node to another with gratuitous ARP
//! updates the client's neighbour entry at once. (Leases need an API
//! server; the election is tested with `paddock proxy` end to end.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use paddock_proxy::announce::{arp, link::Link};
use paddock_testkit::netns::NetNs;
use paddock_testkit::service_lab::{ServiceLab, in_netns, output_in};

const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 200);

/// Runs `f` on a single-threaded runtime on a thread inside `ns`, so that
/// every socket it opens is in `ns`.
fn on_node<T: Send>(ns: &NetNs, f: impl AsyncFnOnce() -> T + Send) -> T {
    in_netns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The MAC the client's neighbour table holds for `ip`.
fn client_neighbour(lab: &ServiceLab, ip: Ipv4Addr) -> String {
    let out = output_in(&lab.client, "ip", &["neigh", "show", &ip.to_string()]).unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn knock(lab: &ServiceLab) {
    // Any answer (a refusal will do) makes the client resolve the IP.
    let _ = in_netns(&lab.client, || {
        TcpStream::connect_timeout(&SocketAddr::from((LB_IP, 9)), Duration::from_secs(1))
    });
}

#[test]
fn taking_over_an_ip_moves_the_clients_neighbour_entry() {
    let lab = ServiceLab::start(&[0, 0]).unwrap();
    let (first, second) = (&lab.node(0).ns, &lab.node(1).ns);
    let ip0 = IpAddr::V4(lab.node(0).ip);
    let ip1 = IpAddr::V4(lab.node(1).ip);

    let mac0 = on_node(first, async || {
        let link = Link::holding(ip0).await.unwrap();
        link.add(LB_IP).await.unwrap();
        assert!(link.host_addresses().await.unwrap().contains(&LB_IP));
        link.mac
    });
    knock(&lab);
    assert_eq!(client_neighbour(&lab, LB_IP), mac_text(mac0));

    let mac1 = on_node(second, async || {
        let link = Link::holding(ip1).await.unwrap();
        link.add(LB_IP).await.unwrap();
        arp::announce(link.index, link.mac, LB_IP).unwrap();
        link.mac
    });
    on_node(first, async || {
        let link = Link::holding(ip0).await.unwrap();
        link.remove(LB_IP).await.unwrap();
        assert!(!link.host_addresses().await.unwrap().contains(&LB_IP));
    });
    assert_ne!(mac0, mac1);
    assert_eq!(client_neighbour(&lab, LB_IP), mac_text(mac1));
}

#[test]
fn no_interface_holds_a_foreign_node_ip() {
    let lab = ServiceLab::start(&[0]).unwrap();
    let err = on_node(&lab.node(0).ns, async || {
        Link::holding(IpAddr::V4(Ipv4Addr::new(192, 168, 99, 99)))
            .await
            .err()
    });
    let err = err.expect("found an interface for an IP nobody has");
    assert!(err.to_string().contains("no interface holds"), "{err:#}");
}
