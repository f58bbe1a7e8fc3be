//! Nodes with pods behind services and a client on the nodes' network, for
//! the proxy's tests, all in network namespaces of this machine:
//!
//! ```text
//!  client 192.168.56.1 ── bridge br-lan┬── node0 eth0 192.168.56.10 ── cbr0 10.244.1.1 ── pods 10.244.1.11, .12, ...
//!                                       └── node1 eth0 192.168.56.11 ── cbr0 10.244.2.1 ── pods 10.244.2.11, ...
//! ```
//!
//! Each pod runs busybox `httpd` on port 80 answering its own name, so a
//! request through a service says which endpoint served it. Nodes forward
//! and route to each other's pod networks (host-gw style).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

use crate::netns::NetNs;
use crate::process::Guard;
use crate::unique_name;

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 1);
pub const LAN_PREFIX: u8 = 24;

/// The LAN address of node `index`.
pub fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 56, 10 + index as u8)
}

/// The pod bridge address of node `index`; its pods are in the /24.
pub fn pod_gateway(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1 + index as u8, 1)
}

pub struct ServiceLab {
    pub client: NetNs,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub ns: NetNs,
    pub ip: Ipv4Addr,
    pub pods: Vec<Pod>,
}

pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: NetNs,
    httpd: Option<Guard>,
    root: PathBuf,
}

impl ServiceLab {
    /// `pods_per_node[i]` pods on node `i`.
    pub fn start(pods_per_node: &[usize]) -> Result<ServiceLab> {
        let client = NetNs::create(&unique_name("plc"))?;
        client.bridge("br-lan", &format!("{CLIENT_IP}/{LAN_PREFIX}"))?;
        let mut lab = ServiceLab {
            client,
            nodes: Vec::new(),
        };
        for (index, pods) in pods_per_node.iter().enumerate() {
            let node = lab.start_node(index, *pods)?;
            lab.nodes.push(node);
        }
        // host-gw routes between the nodes' pod networks
        for (i, node) in lab.nodes.iter().enumerate() {
            for (j, other) in lab.nodes.iter().enumerate() {
                if i != j {
                    let [a, b, c, _] = pod_gateway(j).octets();
                    let cidr = format!("{a}.{b}.{c}.0/24");
                    node.ns
                        .ip(&["route", "add", &cidr, "via", &other.ip.to_string()])?;
                }
            }
        }
        Ok(lab)
    }

    fn start_node(&self, index: usize, pods: usize) -> Result<Node> {
        let ns = NetNs::create(&unique_name("pln"))?;
        let ip = node_ip(index);
        let lan_end = format!("node{index}");
        self.client.veth(&lan_end, &ns, "eth0")?;
        self.client.attach(&lan_end, "br-lan")?;
        ns.addr_up("eth0", &format!("{ip}/{LAN_PREFIX}"))?;
        // The client's side of the LAN is the nodes' gateway: a node needs a
        // route for service IPs before its rules rewrite them.
        ns.ip(&["route", "add", "default", "via", &CLIENT_IP.to_string()])?;
        ns.bridge("cbr0", &format!("{}/24", pod_gateway(index)))?;
        ns.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let mut node = Node {
            ns,
            ip,
            pods: Vec::new(),
        };
        for p in 0..pods {
            let pod = Pod::start(&node, index, p)?;
            node.pods.push(pod);
        }
        Ok(node)
    }

    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// All pods of all nodes.
    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.nodes.iter().flat_map(|n| n.pods.iter())
    }
}

impl Pod {
    fn start(node: &Node, node_index: usize, index: usize) -> Result<Pod> {
        let name = format!("pod-{node_index}-{index}");
        let ns = NetNs::create(&unique_name("plp"))?;
        let gw = pod_gateway(node_index);
        let ip = Ipv4Addr::new(10, 244, gw.octets()[2], 11 + index as u8);
        let veth = format!("veth{index}");
        node.ns.veth(&veth, &ns, "eth0")?;
        node.ns.attach(&veth, "cbr0")?;
        // As the CNI bridge plugin's hairpinMode: with br_netfilter, a pod's
        // packet DNATed back to itself leaves by the port it came in on.
        node.ns.ip(&[
            "link",
            "set",
            &veth,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        ns.addr_up("eth0", &format!("{ip}/24"))?;
        ns.ip(&["route", "add", "default", "via", &gw.to_string()])?;

        let root = std::env::temp_dir().join(unique_name("paddock-pod-"));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        std::fs::write(root.join("index.html"), &name)?;
        let mut pod = Pod {
            name,
            ip,
            ns,
            httpd: None,
            root,
        };
        pod.start_httpd()?;
        Ok(pod)
    }

    /// (Re)starts the pod's web server.
    pub fn start_httpd(&mut self) -> Result<()> {
        let mut cmd = self.ns.command("busybox");
        cmd.args(["httpd", "-f", "-p", "80", "-h"]).arg(&self.root);
        self.httpd = Some(Guard::spawn(&self.name, cmd)?);
        let addr = SocketAddr::from((self.ip, 80));
        crate::wait::until(
            "the pod's httpd",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                Ok(in_netns(&self.ns, || TcpStream::connect(addr))
                    .is_ok()
                    .then_some(()))
            },
        )
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.httpd.take();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs `f` on a thread inside `ns`; processes it spawns start there too.
pub fn in_netns<T: Send>(ns: &NetNs, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file =
                    File::open(ns.path()).unwrap_or_else(|e| panic!("opening {}: {e}", ns.path()));
                setns(file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering {}: {e}", ns.path()));
                f()
            })
            .join()
            .expect("the thread inside the namespace panicked")
    })
}

/// `GET /` over a new connection; the body (the serving pod's name).
pub fn http_get(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")?;
    read_response(&mut stream, addr)
}

/// The body of an HTTP/1.0 response read to the end of the stream.
pub fn read_response(stream: &mut TcpStream, addr: SocketAddr) -> Result<String> {
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading from {addr}"))?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("{addr} sent no HTTP response: {response:?}");
    };
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        bail!("{addr} answered {head:?}");
    }
    Ok(body.trim().to_string())
}

/// `count` requests from inside `ns`; how many each pod served.
pub fn tally(ns: &NetNs, addr: SocketAddr, count: usize) -> Result<BTreeMap<String, usize>> {
    in_netns(ns, || {
        let mut served = BTreeMap::new();
        for _ in 0..count {
            let pod = http_get(addr, Duration::from_secs(3))?;
            *served.entry(pod).or_insert(0) += 1;
        }
        Ok(served)
    })
}

/// Adds `ip/32` to the node's LAN interface, as the load-balancer announcer
/// does.
pub fn add_lan_address(node: &Node, ip: Ipv4Addr) -> Result<()> {
    node.ns
        .ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
    Ok(())
}

/// Runs `program args` in `ns` and returns its stdout.
pub fn output_in(ns: &NetNs, program: &str, args: &[&str]) -> Result<String> {
    let out = crate::netns::run(ns.command(program).args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether each of `pods` served within ±15% of an even share of `total`.
pub fn evenly_spread(served: &BTreeMap<String, usize>, pods: usize, total: usize) -> bool {
    let even = total as f64 / pods as f64;
    served.len() == pods
        && served
            .values()
            .all(|&n| (n as f64 - even).abs() <= 0.15 * even)
}

/// A client making one new connection after another to an address, from
/// inside a namespace, until stopped: what a user's loop of requests sees.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl RequestLoop {
    pub fn start(ns: &NetNs, addr: SocketAddr) -> Result<RequestLoop> {
        let file = File::open(ns.path()).with_context(|| format!("opening {}", ns.path()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            setns(file, CloneFlags::CLONE_NEWNET).expect("entering the client's namespace");
            let (mut ok, mut failed) = (0, 0);
            while !stopping.load(Ordering::Relaxed) {
                match http_get(addr, Duration::from_secs(3)) {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default();
                        eprintln!(
                            "request to {addr} failed at {}.{:03} (Unix time): {e:#}",
                            at.as_secs(),
                            at.subsec_millis()
                        );
                        failed += 1;
                    }
                }
            }
            (ok, failed)
        });
        Ok(RequestLoop { stop, thread })
    }

    /// Stops the loop; how many requests succeeded and failed.
    pub fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the request loop panicked")
    }
}

/// A UDP server in a namespace answering every datagram with `name`, until
/// dropped.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(ns: &NetNs, port: u16, name: &str) -> Result<UdpEcho> {
        let socket = in_netns(ns, || std::net::UdpSocket::bind(("0.0.0.0", port)))
            .with_context(|| format!("binding UDP port {port} in {}", ns.name()))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let name = name.to_string();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(name.as_bytes(), from);
                }
            }
        });
        Ok(UdpEcho {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
