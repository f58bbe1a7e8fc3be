//! The proxy's behaviour (issue 6's acceptance) in IPVS mode, and in
//! iptables mode for comparison, inside User-Mode Linux VMs: node-10 runs
//! the proxy, node-11 and node-12 serve HTTP on port 80 as the endpoints,
//! and the lab's namespace (192.168.56.1) is a client on their network.
//!
//! The proxy is driven from a model: each test re-executes this test binary
//! in node-10 as a small proxy (see `drive`) that syncs the backend to the
//! model in `/run/paddock-model` whenever the test writes a new one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use paddock_proxy::Backend;
use paddock_proxy::model::{
    Endpoint, Model, Protocol, Service, ServicePort, ServicePortName, SessionAffinity,
    TrafficPolicy,
};
use paddock_testkit::service_lab::RequestLoop;
use paddock_testkit::uml::{Lab, LabSpec, Spawned, Vm};
use paddock_testkit::wait;

/// Set in the VM to the proxy mode this binary runs as (instead of tests).
const DRIVER: &str = "PADDOCK_PROXY_DRIVER";
const MODEL: &str = "/run/paddock-model";
const NODE_IP: &str = "192.168.56.10";
const LB_IP: &str = "192.168.56.200";

macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod ipvs {
            $(#[test]
            fn $scenario() -> anyhow::Result<()> {
                if let Some(done) = super::drive() {
                    return done;
                }
                super::$scenario("ipvs", concat!("ipvs::", stringify!($scenario)))
            })*
        }
        mod iptables {
            $(#[test]
            fn $scenario() -> anyhow::Result<()> {
                if let Some(done) = super::drive() {
                    return done;
                }
                super::$scenario("iptables", concat!("iptables::", stringify!($scenario)))
            })*
        }
    };
}

in_both_modes!(
    services_answer_spread_evenly_and_refuse_without_endpoints,
    affinity_pins_a_client_and_a_removed_endpoint_gets_no_new_connections,
    a_proxy_restart_drops_no_connection_and_no_request,
);

/// The web service: cluster IP 10.96.0.10:80, node port 30080, the
/// load-balancer IP, `options`, and the endpoints on `backends`.
fn web(options: &str, backends: &[&str]) -> String {
    let endpoints: Vec<String> = backends.iter().map(|b| format!("{b}:80")).collect();
    format!(
        "service web tcp 10.96.0.10:80 nodeport=30080 lb={LB_IP} {options} -> {}",
        endpoints.join(" ")
    )
}

const BACKENDS: [&str; 2] = ["192.168.56.11", "192.168.56.12"];

fn services_answer_spread_evenly_and_refuse_without_endpoints(
    mode: &str,
    test: &str,
) -> Result<()> {
    let lab = three_nodes()?;
    let _servers = serve_hostnames(&lab)?;
    let mut proxy = ModelProxy::start(lab.node(0), mode, test)?;
    proxy.sync(&[
        &web("", &BACKENDS),
        "service empty tcp 10.96.0.20:80 nodeport=30090 ->",
    ])?;
    route_load_balancer_ip(&lab)?;

    // The cluster IP from the node, the node port and the load-balancer IP
    // from the client.
    let node = lab.node(0);
    let answer = node.run("curl -sS --max-time 5 http://10.96.0.10/")?;
    ensure!(is_backend(&answer), "cluster IP answered {answer:?}");
    for url in ["http://192.168.56.10:30080/", "http://192.168.56.200/"] {
        let answer = lab.client_get(url)?;
        ensure!(is_backend(&answer), "{url} answered {answer:?}");
    }

    // No endpoints: refused at once, not left to time out. curl's own
    // clock on the node: the VM's command channel adds its latency.
    let started = Instant::now();
    let from_client = lab
        .net()
        .command("curl")
        .args(["-sS", "--max-time", "5", "http://192.168.56.10:30090/"])
        .output()?;
    let client_took = started.elapsed().as_secs_f64();
    let from_node =
        node.exec("curl -sS -o /dev/null -w '%{time_total}' --max-time 5 http://10.96.0.20/")?;
    let node_took: f64 = from_node
        .stdout
        .trim()
        .parse()
        .context("curl's time_total")?;
    // A timeout would take 5 s (curl exits 28). iptables mode in these VMs
    // sometimes answers the client's first SYN only on its retransmission,
    // a second later (the host-kernel netns test holds it to 1 s); IPVS
    // refuses at once.
    let client_bound = if mode == "ipvs" { 1.0 } else { 2.0 };
    for (what, status, took, bound, stderr) in [
        (
            "the cluster IP from the node",
            from_node.status,
            node_took,
            1.0,
            from_node.stderr,
        ),
        (
            "the node port from the client",
            from_client.status.code().unwrap_or(-1),
            client_took,
            client_bound,
            String::from_utf8_lossy(&from_client.stderr).into_owned(),
        ),
    ] {
        ensure!(
            status == 7 && took < bound,
            "{what} without endpoints: curl exited {status} after {took} s ({})",
            stderr.trim()
        );
    }

    let answers = lab.client_tally("http://192.168.56.10:30080/", 300)?;
    ensure!(answers.len() == 2, "answers: {answers:?}");
    for (who, count) in &answers {
        ensure!(
            (128..=172).contains(count),
            "{who} got {count} of 300 connections, more than 15 % off even: {answers:?}"
        );
    }
    Ok(())
}

fn affinity_pins_a_client_and_a_removed_endpoint_gets_no_new_connections(
    mode: &str,
    test: &str,
) -> Result<()> {
    let lab = three_nodes()?;
    let _servers = serve_hostnames(&lab)?;
    let mut proxy = ModelProxy::start(lab.node(0), mode, test)?;
    proxy.sync(&[&web("affinity=60", &BACKENDS)])?;

    let answers = lab.client_tally("http://192.168.56.10:30080/", 30)?;
    ensure!(
        answers.len() == 1,
        "one client, one endpoint under affinity: {answers:?}"
    );

    proxy.sync(&[&web("", &BACKENDS)])?;
    let answers = lab.client_tally("http://192.168.56.10:30080/", 20)?;
    ensure!(
        answers.len() == 2,
        "without affinity both answer: {answers:?}"
    );

    proxy.sync(&[&web("", &BACKENDS[..1])])?;
    std::thread::sleep(Duration::from_secs(1));
    let answers = lab.client_tally("http://192.168.56.10:30080/", 50)?;
    ensure!(
        answers == BTreeMap::from([("node-11".to_string(), 50)]),
        "after node-12's endpoint went away: {answers:?}"
    );
    Ok(())
}

fn a_proxy_restart_drops_no_connection_and_no_request(mode: &str, test: &str) -> Result<()> {
    let lab = three_nodes()?;
    let _servers = serve_hostnames(&lab)?;
    let _echo = serve_echo(&lab)?;
    let model = [
        &web("", &BACKENDS),
        "service echo tcp 10.96.0.30:7000 nodeport=30700 -> 192.168.56.11:7000 192.168.56.12:7000",
    ];
    let mut proxy = ModelProxy::start(lab.node(0), mode, test)?;
    proxy.sync(&model)?;

    // An established connection, and a client asking again and again.
    let node_port: SocketAddr = format!("{NODE_IP}:30700").parse()?;
    let mut connection = wait::until(
        "the echo service",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || Ok(Some(lab.client_connect(node_port)?)),
    )?;
    echo(&mut connection, "before")?;
    let client = RequestLoop::start(lab.net(), format!("{NODE_IP}:30080").parse()?)?;
    std::thread::sleep(Duration::from_secs(1));

    drop(proxy);
    let mut proxy = ModelProxy::start(lab.node(0), mode, test)?;
    let report = proxy.sync(&model)?;
    ensure!(
        report.contains("full"),
        "a restarted proxy starts with a full sync: {report}"
    );
    std::thread::sleep(Duration::from_secs(1));

    echo(&mut connection, "after")?;
    let (oks, failed) = client.stop();
    ensure!(
        oks >= 10 && failed == 0,
        "client loop across the restart: {oks} ok, {failed} failed"
    );
    Ok(())
}

#[test]
fn ipvs_sets_its_scheduler_and_sysctls_and_drains_a_removed_endpoint() -> Result<()> {
    if let Some(done) = drive() {
        return done;
    }
    let lab = three_nodes()?;
    let node = lab.node(0);
    let _servers = serve_hostnames(&lab)?;
    let _echo = serve_echo(&lab)?;
    let mut proxy = ModelProxy::start(
        node,
        "ipvs:sh",
        "ipvs_sets_its_scheduler_and_sysctls_and_drains_a_removed_endpoint",
    )?;
    let echo_to = |backend: &str| {
        format!("service echo tcp 10.96.0.30:7000 nodeport=30700 -> {backend}:7000")
    };
    proxy.sync(&[&echo_to(BACKENDS[0]), &web("", &BACKENDS[..1])])?;

    ensure!(
        node.run("ipvsadm -Ln")?.contains("TCP  10.96.0.30:7000 sh"),
        "--ipvs-scheduler sh: {}",
        node.run("ipvsadm -Ln")?
    );
    for sysctl in [
        "conntrack",
        "expire_nodest_conn",
        "expire_quiescent_template",
    ] {
        let value = node.run(&format!("cat /proc/sys/net/ipv4/vs/{sysctl}"))?;
        ensure!(value.trim() == "1", "net.ipv4.vs.{sysctl} = {value}");
    }
    let bound = node.run("ip -o addr show dev kube-ipvs0")?;
    for vip in ["10.96.0.10/32", "10.96.0.30/32"] {
        ensure!(bound.contains(vip), "kube-ipvs0 lacks {vip}: {bound}");
    }

    // node-11's endpoint goes away while a client is connected to it.
    let node_port: SocketAddr = format!("{NODE_IP}:30700").parse()?;
    let mut connection = lab.client_connect(node_port)?;
    echo(&mut connection, "before")?;
    proxy.sync(&[&echo_to(BACKENDS[1]), &web("", &BACKENDS[1..])])?;
    let servers = |vs: &str| -> Result<Vec<String>> {
        Ok(node
            .run(&format!("ipvsadm -Ln -t {vs}"))?
            .lines()
            .filter(|l| l.contains("->") && l.contains("Masq"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect())
    };
    assert_eq!(
        servers("192.168.56.10:30700")?,
        [
            "-> 192.168.56.11:7000 Masq 0 1 0",
            "-> 192.168.56.12:7000 Masq 1 0 0"
        ],
        "node-11 drains at weight 0 with its connection"
    );
    echo(&mut connection, "during")?;
    let answers = lab.client_tally("http://192.168.56.10:30080/", 5)?;
    ensure!(
        answers == BTreeMap::from([("node-12".to_string(), 5)]),
        "new connections: {answers:?}"
    );

    // Once its last connection is gone, the next sync deletes it.
    reset(connection)?;
    wait::until(
        "the drained real server to be deleted",
        Duration::from_secs(40),
        Duration::from_secs(1),
        || {
            proxy.sync(&[&echo_to(BACKENDS[1]), &web("", &BACKENDS[1..])])?;
            Ok(
                (servers("192.168.56.10:30700")? == ["-> 192.168.56.12:7000 Masq 1 0 0"])
                    .then_some(()),
            )
        },
    )?;
    Ok(())
}

/// Closes `connection` with a reset, which IPVS forgets within seconds
/// (an orderly close lingers in TIME_WAIT for minutes).
fn reset(connection: std::net::TcpStream) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    setsockopt(
        &connection,
        Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )?;
    drop(connection);
    Ok(())
}

/// node-11 and node-12 echo lines on port 7000.
fn serve_echo(lab: &Lab) -> Result<Vec<Spawned<'_>>> {
    lab.nodes()[1..]
        .iter()
        .map(|node| node.spawn("exec busybox nc -ll -p 7000 -e /bin/cat"))
        .collect()
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

/// node-10 for the proxy, node-11 and node-12 for the endpoints.
fn three_nodes() -> Result<Lab> {
    Lab::boot(LabSpec {
        nodes: 3,
        ..LabSpec::default()
    })
}

/// node-11 and node-12 answer HTTP with their names.
fn serve_hostnames(lab: &Lab) -> Result<Vec<Spawned<'_>>> {
    lab.nodes()[1..]
        .iter()
        .map(|node| node.serve_http(80, node.name()))
        .collect()
}

fn is_backend(answer: &str) -> bool {
    matches!(answer.trim(), "node-11" | "node-12")
}

/// The client reaches the load-balancer IP through node-10, as it would
/// through the node announcing it.
fn route_load_balancer_ip(lab: &Lab) -> Result<()> {
    lab.net().ip(&["route", "add", LB_IP, "via", NODE_IP])?;
    Ok(())
}

/// This test binary running as a proxy in a VM.
struct ModelProxy<'vm> {
    vm: &'vm Vm,
    process: Spawned<'vm>,
    generation: u32,
}

impl<'vm> ModelProxy<'vm> {
    fn start(vm: &'vm Vm, mode: &str, test: &str) -> Result<ModelProxy<'vm>> {
        let exe = std::env::current_exe()?;
        let process = vm.spawn(&format!(
            "{DRIVER}={mode} exec {} --exact {test} --nocapture --test-threads 1",
            exe.display()
        ))?;
        Ok(ModelProxy {
            vm,
            process,
            generation: 0,
        })
    }

    /// Has the proxy sync to the services in `lines`; returns its report.
    fn sync(&mut self, lines: &[&str]) -> Result<String> {
        self.generation += 1;
        let generation = self.generation;
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.vm.run(&format!(
            "cat > {MODEL}.new <<'EOF'\ngeneration {generation}\n{text}EOF\nmv {MODEL}.new {MODEL}"
        ))?;
        let done = format!("synced {generation} ");
        wait::until(
            &format!("the proxy to sync generation {generation}"),
            Duration::from_secs(60),
            Duration::from_millis(20),
            || {
                let out = self.process.stdout();
                if let Some(line) = out.lines().find(|l| l.contains(&done)) {
                    return Ok(Some(Ok(line.to_string())));
                }
                if let Some(line) = out.lines().find(|l| l.contains("sync failed")) {
                    return Ok(Some(Err(anyhow::anyhow!("{line}"))));
                }
                if let Some(exit) = self.process.try_output()? {
                    let why = format!("the proxy exited: {}{}", exit.stdout, exit.stderr);
                    return Ok(Some(Err(anyhow::anyhow!(why))));
                }
                Ok(None)
            },
        )?
    }
}

/// In the VM: runs as a proxy of the mode in `$PADDOCK_PROXY_DRIVER`
/// (`iptables`, `ipvs` or `ipvs:SCHEDULER`),
/// syncing to `/run/paddock-model` each time its generation goes up. The
/// model is one `generation N` line, then one line per service port:
/// `service NAME PROTO VIP:PORT [nodeport=N] [lb=IP] [affinity=SECS]
/// [local] -> IP:PORT[/local]...`.
fn drive() -> Option<Result<()>> {
    let mode = std::env::var(DRIVER).ok()?;
    Some(run_driver(&mode))
}

fn run_driver(mode: &str) -> Result<()> {
    let node_ip: IpAddr = NODE_IP.parse()?;
    let (mode, scheduler) = mode.split_once(':').unwrap_or((mode, "rr"));
    let mut backend: Box<dyn Backend> = match mode {
        "ipvs" => {
            let mut config = paddock_proxy::ipvs::Config::new(node_ip);
            config.scheduler = scheduler.parse().map_err(anyhow::Error::msg)?;
            Box::new(paddock_proxy::ipvs::Proxier::new(config)?)
        }
        "iptables" => {
            let flavor = paddock_proxy::iptables::Flavor::detect()?;
            Box::new(paddock_proxy::iptables::Proxier::new(
                paddock_proxy::iptables::Iptables::new(flavor),
                paddock_proxy::iptables::RenderConfig::new(node_ip),
            ))
        }
        other => bail!("unknown mode {other}"),
    };
    let mut synced = 0;
    loop {
        let text = std::fs::read_to_string(MODEL).unwrap_or_default();
        let mut lines = text.lines();
        let generation: u32 = lines
            .next()
            .and_then(|l| l.strip_prefix("generation "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if generation > synced {
            let model = parse_model(lines)?;
            match backend.sync(&model) {
                Ok(report) => println!(
                    "synced {generation} {} services={} operations={}",
                    if report.full { "full" } else { "partial" },
                    report.services_changed,
                    report.operations
                ),
                Err(e) => println!("sync failed: {e:#}"),
            }
            synced = generation;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn parse_model<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Model> {
    let mut model = Model::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (spec, endpoints) = line.split_once("->").context("a service line needs ->")?;
        let words: Vec<&str> = spec.split_whitespace().collect();
        let ["service", name, protocol, vip, options @ ..] = words.as_slice() else {
            bail!("bad service line {line:?}");
        };
        let vip: SocketAddr = vip.parse()?;
        let protocol = match *protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => bail!("protocol {other}"),
        };
        let mut port = ServicePort::cluster_ip(
            ServicePortName::new("default", name, ""),
            protocol,
            vip.ip(),
            vip.port(),
        );
        for option in options {
            match option.split_once('=') {
                Some(("nodeport", n)) => port.node_port = Some(n.parse()?),
                Some(("lb", ip)) => port.load_balancer_ips.push(ip.parse()?),
                Some(("affinity", secs)) => {
                    port.session_affinity = SessionAffinity::ClientIp {
                        timeout: Duration::from_secs(secs.parse()?),
                    }
                }
                None if *option == "local" => port.external_traffic_policy = TrafficPolicy::Local,
                _ => bail!("unknown option {option}"),
            }
        }
        let endpoints = endpoints
            .split_whitespace()
            .map(|e| -> Result<Endpoint> {
                let (addr, local) = match e.strip_suffix("/local") {
                    Some(addr) => (addr, true),
                    None => (e, false),
                };
                let addr: SocketAddr = addr.parse()?;
                let mut endpoint = Endpoint::ready(addr.ip(), addr.port());
                endpoint.local = local;
                Ok(endpoint)
            })
            .collect::<Result<Vec<_>>>()?;
        model.insert(Service::new(port, endpoints));
    }
    Ok(model)
}
