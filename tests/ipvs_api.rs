//! `paddock proxy --proxy-mode ipvs` end to end, inside User-Mode Linux VMs
//! (this host's kernel has no IPVS): a `paddock server --disable-agent` on
//! the host, Services and EndpointSlices made with stock kubectl, and the
//! real proxy binary on the VMs. node-11 and node-12 serve HTTP as the
//! endpoints; the lab's namespace (192.168.56.1) is the client.
//!
//! The VMs reach the server, which listens on the host's loopback, at the
//! same address: a relay on each VM's loopback to 192.168.56.1, and one
//! there to the host's loopback.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::relay::Relay;
use paddock_testkit::server::Server;
use paddock_testkit::service_lab::RequestLoop;
use paddock_testkit::uml::{Lab, LabSpec, Spawned, Vm};
use paddock_testkit::wait;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");
const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 200);
const NODE_PORT: u16 = 30080;

/// The server, reachable from the VMs, and kubectl on the host.
struct Api {
    server: Server,
    kubectl: Kubectl,
    _relay: Relay,
}

impl Api {
    fn start(lab: &Lab) -> Result<Api> {
        // The server's load-balancer controller hands out LB_IP.
        let server = Server::start(Path::new(PADDOCK), &["--lb-pool", &LB_IP.to_string()])?;
        let port = server.port();
        let relay = Relay::start(
            lab.net(),
            SocketAddr::new(lab.client_ip().into(), port),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )?;
        let kubectl = Kubectl::v1_32(&server.kubeconfig(), lab.dir());
        // The announcer's leases live in kube-system.
        let _ = kubectl.output(&["create", "namespace", "kube-system"]);
        Ok(Api {
            server,
            kubectl,
            _relay: relay,
        })
    }

    fn apply(&self, manifest: &str) -> Result<()> {
        self.kubectl
            .run_with_input(&["apply", "-f", "-"], manifest)?;
        Ok(())
    }

    /// The cluster IP the server allocated to Service `name`.
    fn cluster_ip(&self, name: &str) -> Result<IpAddr> {
        let ip = self
            .kubectl
            .run(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"])?;
        ip.trim().parse().context("the cluster IP")
    }

    /// Waits until the load-balancer controller has given Service `name`
    /// its address, and checks it is LB_IP.
    fn wait_for_load_balancer_ip(&self, name: &str) -> Result<()> {
        let ip = wait::until(
            &format!("a load-balancer IP for {name}"),
            Duration::from_secs(20),
            Duration::from_millis(200),
            || {
                let ip = self.kubectl.run(&[
                    "get",
                    "service",
                    name,
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ])?;
                Ok((!ip.trim().is_empty()).then(|| ip.trim().to_string()))
            },
        )?;
        ensure!(ip == LB_IP.to_string(), "{name} got {ip}, not {LB_IP}");
        Ok(())
    }
}

/// A relay on `vm`'s loopback to the server, so that the kubeconfig's
/// address works there.
fn relay<'vm>(vm: &'vm Vm, api: &Api) -> Result<Spawned<'vm>> {
    let port = api.server.port();
    let relay = vm.spawn(&format!(
        "exec busybox nc -ll -p {port} -e busybox nc {} {port}",
        Ipv4Addr::new(192, 168, 56, 1)
    ))?;
    vm.run(&format!(
        "for i in $(seq 100); do ss -ltnH 'sport = :{port}' | grep -q . && exit 0; sleep 0.05; done
         exit 1"
    ))
    .context("the relay to the server did not listen")?;
    Ok(relay)
}

/// `paddock proxy` in IPVS mode on `vm`; its log is the process's output.
fn proxy<'vm>(vm: &'vm Vm, api: &Api) -> Result<Spawned<'vm>> {
    vm.spawn(&format!(
        "NO_COLOR=1 exec {PADDOCK} proxy --kubeconfig {} --proxy-mode ipvs --node-ip {} \
         --hostname-override {} --metrics-bind-address 0.0.0.0:10249 2>&1",
        api.server.kubeconfig().display(),
        vm.ip(),
        vm.name()
    ))
}

fn service(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  ports:\n  - name: http\n    port: 80\n    targetPort: 80\n    \
         nodePort: {NODE_PORT}\n{extra_spec}"
    )
}

/// An EndpointSlice of Service `service` with endpoints on `nodes`' port 80.
fn slice(service: &str, nodes: &[&Vm]) -> String {
    let mut out = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\n\
         ports:\n- name: http\n  port: 80\n  protocol: TCP\nendpoints:\n"
    );
    for node in nodes {
        out.push_str(&format!(
            "- addresses: [\"{}\"]\n  nodeName: {}\n  conditions:\n    ready: true\n",
            node.ip(),
            node.name()
        ));
    }
    if nodes.is_empty() {
        out.push_str("[]\n");
    }
    out
}

fn three_nodes() -> Result<Lab> {
    Lab::boot(LabSpec {
        nodes: 3,
        ..LabSpec::default()
    })
}

/// Waits until `GET url` from the client answers, as the rules following
/// an API change within a second or so should make it.
fn client_waits_for(lab: &Lab, url: &str, log: &Spawned) -> Result<String> {
    wait::until(
        &format!("{url} to answer"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok(lab.client_get(url).ok()),
    )
    .with_context(|| format!("proxy log:\n{}", log.stdout()))
}

fn is_backend(answer: &str) -> bool {
    matches!(answer.trim(), "node-11" | "node-12")
}

#[test]
fn services_made_with_kubectl_work_through_paddock_proxy_in_ipvs_mode() -> Result<()> {
    let lab = three_nodes()?;
    let api = Api::start(&lab)?;
    let (node, backends) = (lab.node(0), [lab.node(1), lab.node(2)]);
    let _servers: Vec<Spawned> = backends
        .iter()
        .map(|b| b.serve_http(80, b.name()))
        .collect::<Result<_>>()?;
    let _relay = relay(node, &api)?;
    let proxy = proxy(node, &api)?;
    api.apply(&service("web", ""))?;
    api.apply(&slice("web", &backends))?;
    api.wait_for_load_balancer_ip("web")?;
    let cluster_ip = api.cluster_ip("web")?;

    // The cluster IP from the node, the node port and the LB IP from the
    // client.
    let from_node = wait::until(
        "the cluster IP to answer on the node",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            Ok(node
                .run(&format!("curl -sS --max-time 2 http://{cluster_ip}/"))
                .ok())
        },
    )
    .with_context(|| format!("proxy log:\n{}", proxy.stdout()))?;
    ensure!(is_backend(&from_node), "{from_node:?}");
    let node_port = format!("http://{}:{NODE_PORT}/", node.ip());
    ensure!(is_backend(&client_waits_for(&lab, &node_port, &proxy)?));
    let lb = format!("http://{LB_IP}/");
    ensure!(is_backend(&client_waits_for(&lab, &lb, &proxy)?));

    // The kernel holds what IPVS mode promises.
    let ipvsadm = node.run("ipvsadm -Ln")?;
    for vs in [
        format!("TCP  {cluster_ip}:80 rr"),
        format!("TCP  {}:{NODE_PORT} rr", node.ip()),
        format!("TCP  {LB_IP}:80 rr"),
    ] {
        ensure!(ipvsadm.contains(&vs), "no {vs} in\n{ipvsadm}");
    }
    let bound = node.run("ip -o addr show dev kube-ipvs0")?;
    ensure!(bound.contains(&format!("{cluster_ip}/32")), "{bound}");

    // ClientIP affinity pins a client.
    api.apply(&service("web", "  sessionAffinity: ClientIP\n"))?;
    wait::until(
        "session affinity",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || Ok((lab.client_tally(&lb, 20)?.len() == 1).then_some(())),
    )?;
    api.apply(&service("web", ""))?;
    wait::until(
        "affinity to go",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || Ok((lab.client_tally(&lb, 4)?.len() == 2).then_some(())),
    )?;

    // 300 connections within ±15 % of even.
    let served = lab.client_tally(&node_port, 300)?;
    ensure!(
        served.len() == 2 && served.values().all(|n| (128..=172).contains(n)),
        "{served:?}"
    );

    // A removed endpoint gets no new connections a second later.
    api.apply(&slice("web", &backends[..1]))?;
    wait::until(
        "node-12 to stop taking connections",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let servers = node.run(&format!("ipvsadm -Ln -t {}:{NODE_PORT}", node.ip()))?;
            // "-> 192.168.56.12:80 Masq WEIGHT ACTIVE INACTIVE", or gone.
            let weight = servers
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|words| words.get(1) == Some(&"192.168.56.12:80"))
                .and_then(|words| words.get(3).map(|w| w.to_string()));
            Ok(matches!(weight.as_deref(), None | Some("0")).then_some(()))
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let after = lab.client_tally(&node_port, 50)?;
    ensure!(
        after == BTreeMap::from([("node-11".to_string(), 50)]),
        "after node-12's endpoint went: {after:?}"
    );

    // A service without endpoints is refused at once.
    api.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: empty\n  namespace: default\n\
         spec:\n  ports:\n  - port: 80\n",
    )?;
    let empty = api.cluster_ip("empty")?;
    wait::until(
        "the empty service's virtual server",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            Ok(node
                .run("ipvsadm -Ln")?
                .contains(&format!("TCP  {empty}:80 rr"))
                .then_some(()))
        },
    )?;
    // curl's own clock: the VM's command channel adds its latency.
    let out = node.exec(&format!(
        "curl -sS -o /dev/null -w '%{{time_total}}' --max-time 3 http://{empty}/"
    ))?;
    let took: f64 = out.stdout.trim().parse().context("curl's time_total")?;
    ensure!(
        out.status == 7 && took < 1.0,
        "without endpoints: curl exited {} after {took} s: {}",
        out.status,
        out.stderr.trim()
    );

    // Metrics and health.
    let metrics = node.run("curl -sS --max-time 5 http://127.0.0.1:10249/metrics")?;
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "kubeproxy_network_programming_duration_seconds_count",
    ] {
        ensure!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let healthz =
        node.run("curl -sS -w '%{http_code}' --max-time 5 http://127.0.0.1:10256/healthz")?;
    ensure!(healthz.ends_with("200"), "{healthz}");
    Ok(())
}

#[test]
fn restarting_paddock_proxy_in_ipvs_mode_drops_no_connection_and_no_request() -> Result<()> {
    let lab = three_nodes()?;
    let api = Api::start(&lab)?;
    let (node, backends) = (lab.node(0), [lab.node(1), lab.node(2)]);
    let _servers: Vec<Spawned> = backends
        .iter()
        .map(|b| b.spawn("exec busybox nc -ll -p 80 -e /bin/cat"))
        .collect::<Result<_>>()?;
    let _http: Vec<Spawned> = backends
        .iter()
        .map(|b| b.serve_http(8080, b.name()))
        .collect::<Result<_>>()?;
    let _relay = relay(node, &api)?;
    let proxy = proxy(node, &api)?;
    // "web" echoes on port 80; "hello" answers HTTP on 8080.
    api.apply(&service("web", ""))?;
    api.apply(&slice("web", &backends))?;
    api.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello\n  namespace: default\n\
         spec:\n  type: NodePort\n  ports:\n  - name: http\n    port: 8080\n    nodePort: 30888\n",
    )?;
    api.apply(&slice("hello", &backends).replace("port: 80\n", "port: 8080\n"))?;
    let hello = format!("http://{}:30888/", node.ip());
    client_waits_for(&lab, &hello, &proxy)?;

    let node_port = SocketAddr::new(node.ip().into(), NODE_PORT);
    let mut held = wait::until(
        "the echo service",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || Ok(Some(lab.client_connect(node_port)?)),
    )?;
    echo(&mut held, "before")?;
    let client = RequestLoop::start(lab.net(), SocketAddr::new(node.ip().into(), 30888))?;

    // A clean stop and a crash, each followed by a new proxy that lists
    // everything again and syncs in full.
    proxy.signal("TERM")?;
    proxy.wait(Duration::from_secs(10))?;
    let second = proxy_after_restart(node, &api)?;
    second.signal("KILL")?;
    let third = proxy_after_restart(node, &api)?;
    std::thread::sleep(Duration::from_millis(500));
    let (oks, failed) = client.stop();
    drop(third);

    ensure!(
        oks > 10 && failed == 0,
        "client loop: {oks} ok, {failed} failed"
    );
    echo(&mut held, "after")?;
    Ok(())
}

/// A new proxy, once it has made its first, full sync.
fn proxy_after_restart<'vm>(vm: &'vm Vm, api: &Api) -> Result<Spawned<'vm>> {
    let proxy = proxy(vm, api)?;
    wait::until(
        "the new proxy's first sync",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(plain(&proxy.stdout()).contains("full=true").then_some(())),
    )
    .with_context(|| {
        format!(
            "proxy output:\n{}{}\nprocesses:\n{}",
            proxy.stdout(),
            proxy.stderr(),
            vm.run("ps -ef").unwrap_or_default()
        )
    })?;
    Ok(proxy)
}

/// `log` without terminal colour codes.
fn plain(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Writes `word` on `connection` and reads it back.
fn echo(connection: &mut std::net::TcpStream, word: &str) -> Result<()> {
    connection.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(connection, "{word}")?;
    let mut line = String::new();
    BufReader::new(&*connection)
        .read_line(&mut line)
        .with_context(|| format!("reading the echo of {word:?}"))?;
    ensure!(
        line.trim() == word,
        "echo of {word:?} came back as {line:?}"
    );
    Ok(())
}

#[test]
fn one_node_answers_arp_for_a_load_balancer_ip_and_another_takes_over_when_it_dies() -> Result<()> {
    let lab = three_nodes()?;
    let api = Api::start(&lab)?;
    let backend = lab.node(2);
    let _server = backend.serve_http(80, backend.name())?;
    let _relays = [relay(lab.node(0), &api)?, relay(lab.node(1), &api)?];
    let proxy0 = proxy(lab.node(0), &api)?;
    let proxy1 = proxy(lab.node(1), &api)?;
    let mut proxies = [Some(proxy0), Some(proxy1)];
    api.apply(&service("web", ""))?;
    api.apply(&slice("web", &[backend]))?;
    api.wait_for_load_balancer_ip("web")?;
    let lb = format!("http://{LB_IP}/");
    client_waits_for(&lab, &lb, proxies[0].as_ref().expect("running"))?;

    // Both nodes hold the IP on kube-ipvs0; only the announcing one has it
    // on its LAN interface, and only it answers ARP (strict ARP).
    let holders: Vec<usize> = (0..2)
        .filter(|&i| {
            lab.node(i)
                .run("ip -4 -o addr show dev vec0")
                .is_ok_and(|out| out.contains(&format!("{LB_IP}/32")))
        })
        .collect();
    ensure!(holders.len() == 1, "announcing: {holders:?}");
    for i in 0..2 {
        let bound = lab.node(i).run("ip -o addr show dev kube-ipvs0")?;
        ensure!(bound.contains(&format!("{LB_IP}/32")), "node {i}: {bound}");
    }
    let arping = lab.net().run(
        "busybox",
        &[
            "arping",
            "-I",
            "br0",
            "-c",
            "3",
            "-w",
            "3",
            &LB_IP.to_string(),
        ],
    )?;
    let answering: std::collections::BTreeSet<String> = String::from_utf8_lossy(&arping.stdout)
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            let (mac, _) = rest.split_once(']')?;
            Some(mac.to_string())
        })
        .collect();
    ensure!(
        answering.len() == 1,
        "ARP replies for {LB_IP} came from {answering:?}:\n{}",
        String::from_utf8_lossy(&arping.stdout)
    );

    // The announcing node dies: its proxy and its link.
    let dead = holders[0];
    if let Some(proxy) = proxies[dead].take() {
        proxy.signal("KILL")?;
    }
    lab.node(dead).run("ip link set vec0 down")?;
    let died = Instant::now();
    let survivor = proxies[1 - dead].as_ref().expect("running");
    client_waits_for(&lab, &lb, survivor)?;
    let took = died.elapsed();
    ensure!(took < Duration::from_secs(15), "took over after {took:?}");
    let now = lab.node(1 - dead).run("ip -4 -o addr show dev vec0")?;
    ensure!(now.contains(&format!("{LB_IP}/32")), "{now}");
    Ok(())
}
