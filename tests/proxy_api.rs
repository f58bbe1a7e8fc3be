//! `paddock proxy` end to end, as root: a `paddock server --disable-agent`,
//! Services and EndpointSlices made with stock kubectl, and the real proxy
//! binary in node namespaces of testkit's service lab (busybox httpd pods,
//! a client on the nodes' LAN). The nodes reach the server, which listens
//! on the host's loopback, through a relay on their own loopback.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::process::Guard;
use paddock_testkit::relay::Relay;
use paddock_testkit::server::Server;
use paddock_testkit::service_lab::{
    CLIENT_IP, RequestLoop, ServiceLab, UdpEcho, evenly_spread, http_get, in_netns, output_in,
    read_response, tally,
};
use paddock_testkit::wait;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");
const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 200);
const NODE_PORT: u16 = 30080;
const TIMEOUT: Duration = Duration::from_secs(3);

struct Cluster {
    server: Server,
    lab: ServiceLab,
    kubectl: Kubectl,
    _relays: Vec<Relay>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(pods_per_node: &[usize]) -> Cluster {
        // The server's load-balancer controller hands out LB_IP.
        let server = Server::start(Path::new(PADDOCK), &["--lb-pool", &LB_IP.to_string()]).unwrap();
        let lab = ServiceLab::start(pods_per_node).unwrap();
        let api = SocketAddr::from(([127, 0, 0, 1], server.port()));
        let relays = lab
            .nodes
            .iter()
            .map(|node| Relay::start(&node.ns, api, api).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let kubectl = Kubectl::v1_32(&server.kubeconfig(), dir.path());
        // The announcer's leases live in kube-system.
        let _ = kubectl.output(&["create", "namespace", "kube-system"]);
        Cluster {
            server,
            lab,
            kubectl,
            _relays: relays,
            dir,
        }
    }

    /// `paddock proxy` on node `index`, logging to a file of the test.
    fn proxy(&self, index: usize) -> Guard {
        let node = self.lab.node(index);
        let log = File::create(self.log_path(index)).unwrap();
        let mut cmd = node.ns.command(PADDOCK);
        cmd.arg("proxy")
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(["--proxy-mode", "iptables"])
            .args(["--node-ip", &node.ip.to_string()])
            .args(["--hostname-override", &format!("node{index}")])
            .args(["--cluster-cidr", "10.244.0.0/16"])
            .args(["--metrics-bind-address", "0.0.0.0:10249"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        Guard::spawn(&format!("paddock proxy on node{index}"), cmd).unwrap()
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("proxy-node{index}.log"))
    }

    /// Node `index`'s proxy log, without colour codes.
    fn log(&self, index: usize) -> String {
        let raw = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
        let mut plain = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| c.is_ascii_alphabetic());
            } else {
                plain.push(c);
            }
        }
        plain
    }

    fn apply(&self, manifest: &str) {
        self.kubectl
            .run_with_input(&["apply", "-f", "-"], manifest)
            .unwrap();
    }

    /// The Service `name`'s cluster IP and port 80.
    fn cluster_ip(&self, name: &str) -> SocketAddr {
        let ip = self
            .kubectl
            .run(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"])
            .unwrap();
        SocketAddr::new(ip.trim().parse().unwrap(), 80)
    }

    fn node_port(&self, index: usize) -> SocketAddr {
        SocketAddr::from((self.lab.node(index).ip, NODE_PORT))
    }

    /// Waits until `GET /` to `addr` from `ns` answers, as the rules
    /// following an API change within a second or so should make it.
    fn wait_answer(&self, ns: &paddock_testkit::netns::NetNs, addr: SocketAddr) -> String {
        wait::until(
            &format!("{addr} to answer"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || Ok(in_netns(ns, || http_get(addr, Duration::from_secs(1))).ok()),
        )
        .unwrap_or_else(|e| panic!("{e:#}\nproxy log:\n{}", self.log(0)))
    }
}

fn service(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  ports:\n  - name: http\n    port: 80\n    targetPort: 80\n    \
         nodePort: {NODE_PORT}\n{extra_spec}"
    )
}

fn slice(service: &str, pods: &[(Ipv4Addr, usize)]) -> String {
    let mut out = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\n\
         ports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n"
    );
    for (ip, node) in pods {
        out.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  nodeName: node{node}\n  conditions:\n    ready: true\n"
        ));
    }
    if pods.is_empty() {
        out.push_str("[]\n");
    }
    out
}

fn pods(lab: &ServiceLab) -> Vec<(Ipv4Addr, usize)> {
    lab.nodes
        .iter()
        .enumerate()
        .flat_map(|(n, node)| node.pods.iter().map(move |p| (p.ip, n)))
        .collect()
}

fn set_load_balancer_ip(cluster: &Cluster, name: &str) {
    let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{LB_IP}"}}]}}}}}}"#);
    cluster
        .kubectl
        .run(&[
            "patch",
            "service",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .unwrap();
}

#[test]
fn services_made_with_kubectl_work_through_paddock_proxy() {
    let cluster = Cluster::start(&[3]);
    let lab = &cluster.lab;
    let _proxy = cluster.proxy(0);
    cluster.apply(&service("web", ""));
    cluster.apply(&slice("web", &pods(lab)));
    set_load_balancer_ip(&cluster, "web");
    let cluster_ip = cluster.cluster_ip("web");
    let node = &lab.node(0).ns;

    // ClusterIP from the node, NodePort and LB IP from the client.
    assert!(cluster.wait_answer(node, cluster_ip).starts_with("pod-0-"));
    assert!(
        cluster
            .wait_answer(&lab.client, cluster.node_port(0))
            .starts_with("pod-0-")
    );
    let lb = SocketAddr::from((LB_IP, 80));
    assert!(cluster.wait_answer(&lab.client, lb).starts_with("pod-0-"));

    // ClientIP affinity pins a client.
    cluster.apply(&service("web", "  sessionAffinity: ClientIP\n"));
    let pinned = wait::until(
        "session affinity",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let served = tally(&lab.client, lb, 20)?;
            Ok((served.len() == 1).then_some(served))
        },
    )
    .unwrap();
    assert_eq!(pinned.values().sum::<usize>(), 20);
    cluster.apply(&service("web", ""));

    // A removed endpoint gets no new connections a second later.
    let all = pods(lab);
    cluster.apply(&slice("web", &all[..2]));
    std::thread::sleep(Duration::from_secs(1));
    let after = tally(&lab.client, cluster.node_port(0), 100).unwrap();
    assert!(!after.contains_key("pod-0-2"), "{after:?}");

    // 300 requests spread within ±15% of even over the two left. The split
    // is random, as upstream's (statistic 1/n, 1/(n-1), ...): a sample of
    // 300 leaves ±15% about once in a hundred, so a second sample is drawn
    // before calling it uneven.
    for (ns, addr) in [(node, cluster_ip), (&lab.client, lb)] {
        let mut served = tally(ns, addr, 300).unwrap();
        if !evenly_spread(&served, 2, 300) {
            served = tally(ns, addr, 300).unwrap();
        }
        assert!(evenly_spread(&served, 2, 300), "{addr}: {served:?}");
    }

    // A service without endpoints is refused at once.
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\n  namespace: default\n\
         spec:\n  ports:\n  - port: 80\n",
    );
    let empty = cluster.cluster_ip("empty");
    let connect = || {
        let started = Instant::now();
        let result = in_netns(node, || TcpStream::connect_timeout(&empty, TIMEOUT));
        (result, started.elapsed())
    };
    wait::until(
        "the empty service's rules",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            Ok(connect()
                .0
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
                .then_some(()))
        },
    )
    .unwrap();
    let (result, took) = connect();
    let err = result.expect_err("connected to a service without endpoints");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Metrics and health.
    let metrics = output_in(
        node,
        "curl",
        &["-sS", "--max-time", "5", "http://127.0.0.1:10249/metrics"],
    )
    .unwrap();
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_network_programming_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let healthz = output_in(
        node,
        "curl",
        &[
            "-sS",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "http://127.0.0.1:10256/healthz",
        ],
    )
    .unwrap();
    assert!(
        healthz.ends_with("200") && healthz.contains("lastUpdated"),
        "{healthz}"
    );
}

#[test]
fn restarting_paddock_proxy_drops_no_connection_and_no_request() {
    let cluster = Cluster::start(&[3]);
    let lab = &cluster.lab;
    let mut proxy = Some(cluster.proxy(0));
    cluster.apply(&service("web", ""));
    cluster.apply(&slice("web", &pods(lab)));
    let cluster_ip = cluster.cluster_ip("web");
    let node = &lab.node(0).ns;
    cluster.wait_answer(node, cluster_ip);
    cluster.wait_answer(&lab.client, cluster.node_port(0));

    let mut held = in_netns(node, || {
        let mut stream = TcpStream::connect_timeout(&cluster_ip, TIMEOUT).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n").unwrap();
        stream
    });
    let client = RequestLoop::start(&lab.client, cluster.node_port(0)).unwrap();
    // A clean stop and a crash, each followed by a new proxy that re-lists
    // and rewrites everything.
    let running = proxy.take().expect("a proxy runs");
    running.stop(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let running = cluster.proxy(0);
    wait_for_sync(&cluster, 0);
    running.kill9().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    proxy = Some(cluster.proxy(0));
    wait_for_sync(&cluster, 0);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed) = client.stop();
    drop(proxy);
    assert_eq!(failed, 0);
    assert!(ok > 10, "only {ok} requests");
    held.write_all(b"Host: lab\r\n\r\n").unwrap();
    held.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = read_response(&mut held, cluster_ip).unwrap();
    assert!(body.starts_with("pod-0-"), "{body}");
}

/// Waits until node `index`'s proxy (its log starts afresh with each
/// start) has made its first, full sync.
fn wait_for_sync(cluster: &Cluster, index: usize) {
    wait::until(
        "the new proxy's first sync",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(cluster.log(index).contains("full=true").then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(index)));
}

#[test]
fn a_load_balancer_ip_moves_to_another_node_when_its_node_dies() {
    let cluster = Cluster::start(&[1, 1]);
    let lab = &cluster.lab;
    let mut proxies = [Some(cluster.proxy(0)), Some(cluster.proxy(1))];
    cluster.apply(&service("web", ""));
    cluster.apply(&slice("web", &pods(lab)));
    set_load_balancer_ip(&cluster, "web");
    let lb = SocketAddr::from((LB_IP, 80));
    cluster.wait_answer(&lab.client, lb);

    let holders = |lab: &ServiceLab| -> Vec<usize> {
        (0..lab.nodes.len())
            .filter(|&i| {
                output_in(
                    &lab.node(i).ns,
                    "ip",
                    &["-4", "addr", "show", "dev", "eth0"],
                )
                .is_ok_and(|out| out.contains(&format!("{LB_IP}/32")))
            })
            .collect()
    };
    let announcing = holders(lab);
    assert_eq!(
        announcing.len(),
        1,
        "exactly one node announces: {announcing:?}"
    );
    let dead = announcing[0];

    // The node dies: its proxy and its link.
    if let Some(proxy) = proxies[dead].take() {
        proxy.kill9().unwrap();
    }
    lab.node(dead)
        .ns
        .ip(&["link", "set", "eth0", "down"])
        .unwrap();
    let died = Instant::now();
    // The lease runs out (8 s) and the next retry (2 s) takes it; a loaded
    // machine may add to that.
    wait::until(
        "the load-balancer IP to answer again",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || Ok(in_netns(&lab.client, || http_get(lb, Duration::from_secs(1))).ok()),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(1 - dead)));
    let took = died.elapsed();
    let now = holders(lab);
    assert!(now.contains(&(1 - dead)), "{now:?}");
    eprintln!("took over in {took:?}");
}

#[test]
fn a_udp_flow_leaves_a_removed_endpoint_at_once() {
    let cluster = Cluster::start(&[2]);
    let lab = &cluster.lab;
    let _proxy = cluster.proxy(0);
    let _echoes: Vec<UdpEcho> = lab
        .pods()
        .map(|p| UdpEcho::start(&p.ns, 5353, &p.name).unwrap())
        .collect();
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\n  namespace: default\n\
         spec:\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n    targetPort: 5353\n",
    );
    let udp_slice = |pods: &[(Ipv4Addr, usize)]| {
        slice("dns", pods).replace(
            "- name: http\n  port: 80\n  protocol: TCP",
            "- name: dns\n  port: 5353\n  protocol: UDP",
        )
    };
    let all = pods(lab);
    cluster.apply(&udp_slice(&all));
    let service = SocketAddr::new(cluster.cluster_ip("dns").ip(), 53);

    // One socket, so every datagram belongs to the same conntrack flow.
    let node = &lab.node(0).ns;
    let socket = in_netns(node, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let ask = || -> Option<String> {
        socket.send_to(b"who", service).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = wait::until(
        "the UDP service to answer",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok(ask()),
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            ask().as_deref(),
            Some(first.as_str()),
            "the flow kept its endpoint"
        );
    }

    // Its endpoint goes (the pod itself still answers): the flow's
    // conntrack entry goes with it, and the next datagram finds the other.
    let kept: Vec<_> = all
        .iter()
        .zip(lab.pods())
        .filter(|(_, pod)| pod.name != first)
        .map(|(p, _)| *p)
        .collect();
    cluster.apply(&udp_slice(&kept));
    let moved = wait::until(
        "the flow to move",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || Ok(ask().filter(|who| *who != first)),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(0)));
    assert_ne!(moved, first);
}

#[test]
fn external_traffic_policy_local_keeps_the_client_ip_and_answers_health_checks() {
    // The service's pods all run on node 1; node 0 has none.
    let cluster = Cluster::start(&[0, 2]);
    let lab = &cluster.lab;
    let _proxy0 = cluster.proxy(0);
    cluster.apply(&service("web", "  externalTrafficPolicy: Local\n"));
    cluster.apply(&slice("web", &pods(lab)));
    set_load_balancer_ip(&cluster, "web");
    let health_port: u16 = cluster
        .kubectl
        .run(&[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.spec.healthCheckNodePort}",
        ])
        .unwrap()
        .trim()
        .parse()
        .expect("the server allocated a health-check node port");
    // What node `index`'s health-check node port answers the client.
    let health = |index: usize| -> Option<(String, String)> {
        let url = format!("http://{}:{health_port}/", lab.node(index).ip);
        let out = output_in(
            &lab.client,
            "curl",
            &["-sS", "-w", "\n%{http_code}", "--max-time", "2", &url],
        )
        .ok()?;
        let (body, code) = out.rsplit_once('\n')?;
        Some((code.to_string(), body.to_string()))
    };
    let wait_health = |index: usize, code: &str| -> String {
        wait::until(
            &format!("node{index}'s health check to say {code}"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                Ok(health(index)
                    .filter(|(c, _)| c == code)
                    .map(|(_, body)| body))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(index)))
    };

    // Node 0 says it cannot serve, and leaves the load-balancer IP to a node
    // that can: node 1 wins it although it starts later.
    let body = wait_health(0, "503");
    assert!(body.contains(r#""localEndpoints":0"#), "{body}");
    let _proxy1 = cluster.proxy(1);
    let body = wait_health(1, "200");
    assert!(body.contains(r#""localEndpoints":2"#), "{body}");
    let lb = SocketAddr::from((LB_IP, 80));
    assert!(cluster.wait_answer(&lab.client, lb).starts_with("pod-1-"));
    let on_eth0 = output_in(
        &lab.node(1).ns,
        "ip",
        &["-4", "addr", "show", "dev", "eth0"],
    )
    .unwrap();
    assert!(on_eth0.contains(&format!("{LB_IP}/32")), "{on_eth0}");

    // Node 1's NodePort serves only its own pods, and they see the client's
    // own address (no masquerade).
    let served = tally(&lab.client, cluster.node_port(1), 20).unwrap();
    assert!(
        served.keys().all(|pod| pod.starts_with("pod-1-")),
        "{served:?}"
    );
    let held = in_netns(&lab.client, || {
        let mut stream = TcpStream::connect_timeout(&cluster.node_port(1), TIMEOUT).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n").unwrap();
        stream
    });
    // busybox httpd listens on IPv6 too: its peers read [::ffff:a.b.c.d]:port.
    let peers: Vec<String> = lab
        .node(1)
        .pods
        .iter()
        .flat_map(|pod| {
            let out = output_in(
                &pod.ns,
                "ss",
                &["-Htn", "state", "established", "sport", "=", ":80"],
            )
            .unwrap();
            out.lines()
                .filter_map(|line| line.split_whitespace().last())
                .map(|peer| peer.replace("[::ffff:", "").replace(']', ""))
                .collect::<Vec<_>>()
        })
        .collect();
    let client = format!("{CLIENT_IP}:{}", held.local_addr().unwrap().port());
    assert!(
        peers.contains(&client),
        "{client} not among the pods' peers {peers:?}"
    );

    // Node 0's NodePort drops outside traffic: it has no pod to keep the
    // client's address with.
    let err = in_netns(&lab.client, || {
        TcpStream::connect_timeout(&cluster.node_port(0), Duration::from_secs(1))
    })
    .expect_err("node 0 served a Local service without local endpoints");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_client_that_reached_a_node_before_its_load_balancer_ip_existed_is_served() {
    let cluster = Cluster::start(&[1]);
    let lab = &cluster.lab;
    let node = &lab.node(0).ns;
    let _proxy = cluster.proxy(0);
    wait_for_sync(&cluster, 0);

    // The client's ARP entry for the address still names the node (the
    // address was the node's before its service was deleted): with no rules
    // for it yet, the node forwards the SYN as it is, and nobody answers.
    let link = output_in(node, "ip", &["-br", "link", "show", "dev", "eth0"]).unwrap();
    let mac = link.split_whitespace().nth(2).unwrap().to_string();
    lab.client
        .ip(&[
            "neigh",
            "replace",
            &LB_IP.to_string(),
            "lladdr",
            &mac,
            "dev",
            "br-lan",
            "nud",
            "permanent",
        ])
        .unwrap();
    let curl = |connect_timeout: &str| {
        output_in(
            &lab.client,
            "curl",
            &[
                "-sS",
                "--local-port",
                "40123",
                "--connect-timeout",
                connect_timeout,
                &format!("http://{LB_IP}/"),
            ],
        )
    };
    assert!(curl("2").is_err(), "nothing serves {LB_IP} yet");
    let flows = output_in(node, "conntrack", &["-L", "-d", &LB_IP.to_string()]).unwrap();
    assert!(
        flows.contains("sport=40123") && flows.contains("UNREPLIED"),
        "the node keeps the forwarded SYN's flow:\n{flows}"
    );

    // The service comes, with the address, and the node announces it: once
    // it serves, the client's connection from that same port reaches the
    // pod rather than the stale flow (which the node itself would refuse).
    cluster.apply(&service("web", ""));
    cluster.apply(&slice("web", &pods(lab)));
    wait::until(
        "the node to hold the load-balancer IP",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let addrs = output_in(node, "ip", &["-4", "addr", "show", "dev", "eth0"])?;
            Ok(addrs.contains(&format!("{LB_IP}/32")).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(0)));
    let pod = &lab.node(0).pods[0].name;
    assert_eq!(
        cluster.wait_answer(&lab.client, SocketAddr::from((LB_IP, 80))),
        *pod
    );
    let body = curl("3").unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.log(0)));
    assert_eq!(body.trim(), pod);
}
