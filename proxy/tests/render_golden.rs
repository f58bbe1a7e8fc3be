//! Golden tests of the iptables renderer: a model with every kind of service
//! port, rendered into the `iptables-restore` input of a full sync, then of a
//! partial sync after a few changes. `UPDATE_GOLDEN=1` rewrites the files;
//! review the diff like code.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use paddock_proxy::iptables::jumps::jump_rules;
use paddock_proxy::iptables::plan::{self, Applied, KernelState};
use paddock_proxy::iptables::render::{RenderConfig, base_rules};
use paddock_proxy::model::{
    Endpoint, Model, Protocol, Service, ServicePort, ServicePortName, SessionAffinity,
    TrafficPolicy,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(ns: &str, name: &str, cluster_ip: &str) -> ServicePort {
    ServicePort::cluster_ip(
        ServicePortName::new(ns, name, "p80"),
        Protocol::Tcp,
        ip(cluster_ip),
        80,
    )
}

fn ep(addr: &str, local: bool) -> Endpoint {
    Endpoint {
        local,
        ..Endpoint::ready(ip(addr), 80)
    }
}

fn config() -> RenderConfig {
    RenderConfig {
        cluster_cidr: Some("10.0.0.0/8".parse().unwrap()),
        ..RenderConfig::new(ip("192.168.0.2"))
    }
}

fn model() -> Model {
    let mut services = Vec::new();

    // A plain ClusterIP service with one endpoint.
    services.push(Service::new(
        port("ns1", "svc1", "172.30.0.41"),
        vec![ep("10.180.0.1", false)],
    ));

    // LoadBalancer, externalTrafficPolicy Local: external IP, LB IP, node
    // port and health-check node port; one local and one remote endpoint.
    let mut p = port("ns2", "svc2", "172.30.0.42");
    p.node_port = Some(3001);
    p.health_check_node_port = Some(30000);
    p.external_ips = vec![ip("192.168.99.22")];
    p.load_balancer_ips = vec![ip("1.2.3.4")];
    p.external_traffic_policy = TrafficPolicy::Local;
    services.push(Service::new(
        p,
        vec![ep("10.180.0.2", true), ep("10.180.0.3", false)],
    ));

    // NodePort with ClientIP session affinity and three endpoints.
    let mut p = port("ns3", "svc3", "172.30.0.43");
    p.node_port = Some(3003);
    p.session_affinity = SessionAffinity::ClientIp {
        timeout: Duration::from_secs(10800),
    };
    services.push(Service::new(
        p,
        vec![
            ep("10.180.0.4", false),
            ep("10.180.0.5", false),
            ep("10.180.0.6", true),
        ],
    ));

    // External IP with two endpoints, one of them not ready.
    let mut p = port("ns4", "svc4", "172.30.0.44");
    p.external_ips = vec![ip("192.168.99.33")];
    let mut unready = ep("10.180.0.8", false);
    unready.ready = false;
    unready.serving = false;
    services.push(Service::new(
        p,
        vec![ep("10.180.0.7", false), ep("10.180.0.9", false), unready],
    ));

    // LoadBalancer with source ranges (one of them holds the node's IP).
    let mut p = port("ns5", "svc5", "172.30.0.45");
    p.node_port = Some(3002);
    p.load_balancer_ips = vec![ip("5.6.7.8")];
    p.load_balancer_source_ranges = vec![
        "203.0.113.0/25".parse().unwrap(),
        "192.168.0.0/24".parse().unwrap(),
    ];
    services.push(Service::new(p, vec![ep("10.180.0.10", false)]));

    // No endpoints at all: rejected.
    let mut p = port("ns6", "svc6", "172.30.0.46");
    p.node_port = Some(3006);
    services.push(Service::new(p, vec![]));

    // internalTrafficPolicy Local without a local endpoint: dropped.
    let mut p = port("ns7", "svc7", "172.30.0.47");
    p.internal_traffic_policy = TrafficPolicy::Local;
    services.push(Service::new(p, vec![ep("10.180.0.11", false)]));

    // UDP, an unnamed port, only terminating endpoints left.
    let mut p = ServicePort::cluster_ip(
        ServicePortName::new("kube-system", "dns", ""),
        Protocol::Udp,
        ip("172.30.0.10"),
        53,
    );
    p.port = 53;
    let mut terminating = Endpoint::ready(ip("10.180.0.12"), 5353);
    terminating.ready = false;
    terminating.terminating = true;
    services.push(Service::new(p, vec![terminating]));

    services.into_iter().collect()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from line {}:\n expected: {:?}\n   actual: {:?}\n(UPDATE_GOLDEN=1 rewrites it)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn full_sync_renders_every_kind_of_service() {
    let config = config();
    let kernel = KernelState {
        // A chain left by an earlier run for a service that is gone.
        service_chains: ["KUBE-SVC-GONEGONEGONEGONE".to_string()].into(),
        missing_jumps: jump_rules(),
    };
    let plan = plan::full(
        &config,
        &base_rules(&config),
        &Applied::default(),
        &model(),
        &kernel,
    );
    golden("full.txt", &plan.transaction.to_restore_input());
}

#[test]
fn partial_sync_writes_only_what_changed() {
    let config = config();
    let mut applied = Applied::default();
    let mut model = model();
    let first = plan::full(
        &config,
        &base_rules(&config),
        &applied,
        &model,
        &KernelState::default(),
    );
    applied.commit(first);

    let unchanged = plan::partial(&config, &applied, &model);
    assert!(
        unchanged.transaction.is_empty(),
        "{}",
        unchanged.transaction.to_restore_input()
    );

    // svc4 loses an endpoint, svc6 goes away, svc9 arrives.
    let svc4 = model
        .get(&ServicePortName::new("ns4", "svc4", "p80"))
        .unwrap();
    let changed = Service::new((*svc4.port).clone(), vec![ep("10.180.0.7", false)]);
    model.insert(changed);
    model.remove(&ServicePortName::new("ns6", "svc6", "p80"));
    model.insert(Service::new(
        port("ns9", "svc9", "172.30.0.49"),
        vec![ep("10.180.0.20", false)],
    ));

    let plan = plan::partial(&config, &applied, &model);
    assert_eq!(plan.services_changed, 3);
    golden("partial.txt", &plan.transaction.to_restore_input());
    applied.commit(plan);
    assert!(
        plan::partial(&config, &applied, &model)
            .transaction
            .is_empty()
    );
}
