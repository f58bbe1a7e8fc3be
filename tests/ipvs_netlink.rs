//! Our IPVS netlink client against a real kernel's IPVS, in User-Mode Linux
//! VMs: what it programs is what `ipvsadm -Ln` shows, it reads back what
//! the kernel holds, traffic follows it, and the kernel's refusals come
//! back as errors. The client runs in the VM: each test re-executes this
//! test binary there with a script of IPVS operations (see `in_vm`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Result, bail, ensure};
use paddock_proxy::ipvs::netlink::{
    Change, Destination, Ipvs, Protocol, Scheduler, ServiceKey, VirtualService,
};
use paddock_testkit::uml::{Lab, LabSpec, Vm};

/// Set in the VM to the script the test binary runs there instead of a test.
const SCRIPT: &str = "PADDOCK_IPVS_SCRIPT";
/// Marks the script's output among the test harness's (which may start
/// the same line).
const OUT: &str = "ipvs> ";

#[test]
fn the_client_programs_what_ipvsadm_shows_and_reads_it_back() -> Result<()> {
    if let Some(done) = in_vm() {
        return done;
    }
    let lab = Lab::boot(LabSpec::default())?;
    let node = lab.node(0);
    let out = client(
        node,
        "the_client_programs_what_ipvsadm_shows_and_reads_it_back",
        "info
         add-service tcp 10.96.0.10:80 rr
         add-dest tcp 10.96.0.10:80 10.244.1.5:8080 1
         add-dest tcp 10.96.0.10:80 10.244.2.6:8080 1
         add-service udp 10.96.0.53:53 sh persist 10800
         add-dest udp 10.96.0.53:53 10.244.1.9:53 1
         add-service tcp [fd00::10]:443 wrr
         add-dest tcp [fd00::10]:443 [fd00:1::5]:8443 3
         apply
         dump",
    )?;
    ensure!(out[0] == "info 1.2.1 4096", "{out:?}");
    assert_eq!(
        out[1..],
        [
            "applied",
            "service TCP 10.96.0.10:80 rr",
            "dest 10.244.1.5:8080 weight 1",
            "dest 10.244.2.6:8080 weight 1",
            "service TCP [fd00::10]:443 wrr",
            "dest [fd00:1::5]:8443 weight 3",
            "service UDP 10.96.0.53:53 sh persist 10800",
            "dest 10.244.1.9:53 weight 1",
        ]
    );
    assert_eq!(
        ipvsadm(node)?,
        [
            "TCP 10.96.0.10:80 rr",
            "-> 10.244.1.5:8080 Masq 1 0 0",
            "-> 10.244.2.6:8080 Masq 1 0 0",
            "UDP 10.96.0.53:53 sh persistent 10800",
            "-> 10.244.1.9:53 Masq 1 0 0",
            "TCP [fd00::10]:443 wrr",
            "-> [fd00:1::5]:8443 Masq 3 0 0",
        ]
    );

    let out = client(
        node,
        "the_client_programs_what_ipvsadm_shows_and_reads_it_back",
        "update-service tcp 10.96.0.10:80 lc persist 60
         update-dest tcp 10.96.0.10:80 10.244.2.6:8080 0
         delete-dest udp 10.96.0.53:53 10.244.1.9:53
         delete-service tcp [fd00::10]:443
         apply",
    )?;
    assert_eq!(out, ["applied"]);
    assert_eq!(
        ipvsadm(node)?,
        [
            "TCP 10.96.0.10:80 lc persistent 60",
            "-> 10.244.1.5:8080 Masq 1 0 0",
            "-> 10.244.2.6:8080 Masq 0 0 0",
            "UDP 10.96.0.53:53 sh persistent 10800",
        ]
    );
    Ok(())
}

#[test]
fn refused_changes_come_back_each_with_its_error_and_the_rest_applies() -> Result<()> {
    if let Some(done) = in_vm() {
        return done;
    }
    let lab = Lab::boot(LabSpec::default())?;
    let out = client(
        lab.node(0),
        "refused_changes_come_back_each_with_its_error_and_the_rest_applies",
        "add-service tcp 10.96.0.10:80 rr
         add-service tcp 10.96.0.10:80 rr
         delete-service tcp 10.96.0.99:80
         add-dest tcp 10.96.0.10:80 10.244.1.5:80 1
         add-dest tcp 10.96.0.77:80 10.244.1.5:80 1
         apply
         dump",
    )?;
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(out[0], "failed 3", "{out:?}");
    assert!(
        out[1].contains("adding virtual service TCP 10.96.0.10:80") && out[1].contains("exists"),
        "{out:?}"
    );
    assert!(
        out[2].contains("deleting virtual service TCP 10.96.0.99:80")
            && out[2].contains("No such process"),
        "{out:?}"
    );
    assert!(
        out[3].contains("to TCP 10.96.0.77:80") && out[3].contains("No such process"),
        "{out:?}"
    );
    assert_eq!(
        out[4..],
        [
            "service TCP 10.96.0.10:80 rr",
            "dest 10.244.1.5:80 weight 1"
        ]
    );
    Ok(())
}

#[test]
fn thousands_of_changes_go_in_batches_and_come_back_in_a_multi_part_dump() -> Result<()> {
    if let Some(done) = in_vm() {
        return done;
    }
    let lab = Lab::boot(LabSpec::default())?;
    let node = lab.node(0);
    let out = client(
        node,
        "thousands_of_changes_go_in_batches_and_come_back_in_a_multi_part_dump",
        "bulk 2000
         apply
         count",
    )?;
    assert_eq!(out, ["applied", "2000 services 4000 real servers"]);
    let listed = node.run("ipvsadm -Ln | grep -c -- '-> 10.244.0'")?;
    assert_eq!(listed.trim(), "4000");
    Ok(())
}

#[test]
fn traffic_follows_the_programmed_weights_and_a_drained_server_gets_no_new_connections()
-> Result<()> {
    if let Some(done) = in_vm() {
        return done;
    }
    const TEST: &str =
        "traffic_follows_the_programmed_weights_and_a_drained_server_gets_no_new_connections";
    let lab = Lab::boot(LabSpec {
        nodes: 3,
        ..LabSpec::default()
    })?;
    let (director, backends) = (lab.node(0), &lab.nodes()[1..]);
    let _servers = [
        backends[0].serve_http(80, backends[0].name())?,
        backends[1].serve_http(80, backends[1].name())?,
    ];
    director.run(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1
         ip link add kube-ipvs0 type dummy
         ip addr add 10.96.0.10/32 dev kube-ipvs0
         iptables -t nat -A POSTROUTING -m ipvs --vaddr 10.96.0.10/32 --vport 80 -j MASQUERADE",
    )?;
    lab.net().ip(&[
        "route",
        "add",
        "10.96.0.0/12",
        "via",
        &director.ip().to_string(),
    ])?;

    let out = client(
        director,
        TEST,
        "add-service tcp 10.96.0.10:80 wrr
         add-dest tcp 10.96.0.10:80 192.168.56.11:80 1
         add-dest tcp 10.96.0.10:80 192.168.56.12:80 3
         apply",
    )?;
    assert_eq!(out, ["applied"]);
    let answers = lab.client_tally("http://10.96.0.10/", 40)?;
    ensure!(
        answers == BTreeMap::from([("node-11".into(), 10), ("node-12".into(), 30)]),
        "weights 1:3, answers {answers:?}"
    );

    let out = client(
        director,
        TEST,
        "update-dest tcp 10.96.0.10:80 192.168.56.12:80 0
         apply",
    )?;
    assert_eq!(out, ["applied"]);
    let answers = lab.client_tally("http://10.96.0.10/", 10)?;
    ensure!(
        answers == BTreeMap::from([("node-11".into(), 10)]),
        "node-12 drained, answers {answers:?}"
    );
    Ok(())
}

/// Runs `script` through our client in `vm`, in the test binary `test`.
fn client(vm: &Vm, test: &str, script: &str) -> Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let script: Vec<&str> = script.lines().map(str::trim).collect();
    let stdout = vm.run(&format!(
        "{SCRIPT}='{}' {} --exact {test} --nocapture --test-threads 1",
        script.join(";"),
        exe.display()
    ))?;
    Ok(stdout
        .lines()
        .filter_map(|line| line.split_once(OUT))
        .map(|(_, out)| out.to_string())
        .collect())
}

/// `ipvsadm -Ln` without its headers, one space between words.
fn ipvsadm(vm: &Vm) -> Result<Vec<String>> {
    Ok(vm
        .run("ipvsadm -Ln")?
        .lines()
        .skip(3)
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect())
}

/// In the VM, runs the script in `$PADDOCK_IPVS_SCRIPT`: lines of changes
/// (`add-service PROTO VIP:PORT SCHED [persist SECS]`, `update-service …`,
/// `delete-service PROTO VIP:PORT`, `add-dest PROTO VIP:PORT RIP:PORT
/// WEIGHT`, `update-dest …`, `delete-dest PROTO VIP:PORT RIP:PORT`) that
/// `apply` sends in one call, `bulk N` for N services of two servers each,
/// and `info`, `dump` and `count`, which print.
fn in_vm() -> Option<Result<()>> {
    let script = std::env::var(SCRIPT).ok()?;
    Some(run_script(&script))
}

fn run_script(script: &str) -> Result<()> {
    let mut ipvs = Ipvs::connect()?;
    let mut changes = Vec::new();
    for line in script.split(';') {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["info"] => {
                let info = ipvs.info()?;
                let (major, minor, patch) = info.version;
                println!(
                    "{OUT}info {major}.{minor}.{patch} {}",
                    info.connection_table_size
                );
            }
            ["apply"] => match ipvs.apply(&std::mem::take(&mut changes)) {
                Ok(()) => println!("{OUT}applied"),
                Err(paddock_proxy::ipvs::netlink::Error::Changes(failures)) => {
                    println!("{OUT}failed {}", failures.len());
                    for (change, error) in failures {
                        println!("{OUT}{change}: {error}");
                    }
                }
                Err(e) => return Err(e.into()),
            },
            ["bulk", count] => {
                for n in 0..count.parse::<u16>()? {
                    let [hi, lo] = n.to_be_bytes();
                    let vip = format!("10.100.{hi}.{lo}:80");
                    changes.push(parse_change(&["add-service", "tcp", &vip, "rr"])?);
                    for backend in ["10.244.0.1:80", "10.244.0.2:80"] {
                        changes.push(parse_change(&["add-dest", "tcp", &vip, backend, "1"])?);
                    }
                }
            }
            ["count"] => {
                let services = ipvs.services()?;
                let mut servers = 0;
                for service in &services {
                    servers += ipvs.destinations(&service.key)?.len();
                }
                println!("{OUT}{} services {servers} real servers", services.len());
            }
            ["dump"] => {
                let mut services = ipvs.services()?;
                services.sort_by_key(|s| s.key);
                for service in services {
                    let persist = service
                        .persistence_timeout
                        .map(|t| format!(" persist {t}"))
                        .unwrap_or_default();
                    println!(
                        "{OUT}service {} {}{persist}",
                        service.key, service.scheduler
                    );
                    let mut destinations = ipvs.destinations(&service.key)?;
                    destinations.sort_by_key(|status| status.destination);
                    for status in destinations {
                        let d = status.destination;
                        let addr = SocketAddr::new(d.addr, d.port);
                        println!("{OUT}dest {addr} weight {}", d.weight);
                    }
                }
            }
            words => changes.push(parse_change(words)?),
        }
    }
    Ok(())
}

fn parse_change(words: &[&str]) -> Result<Change> {
    let service = |proto: &str, vip: &str, scheduler: &str, persist: &[&str]| -> Result<_> {
        Ok(VirtualService {
            key: parse_key(proto, vip)?,
            scheduler: scheduler.parse::<Scheduler>().map_err(anyhow::Error::msg)?,
            persistence_timeout: match persist {
                ["persist", secs] => Some(secs.parse()?),
                [] => None,
                other => bail!("unexpected {other:?}"),
            },
        })
    };
    let dest = |rip: &str, weight: &str| -> Result<_> {
        let addr: SocketAddr = rip.parse()?;
        Ok(Destination {
            addr: addr.ip(),
            port: addr.port(),
            weight: weight.parse()?,
        })
    };
    Ok(match words {
        ["add-service", proto, vip, sched, persist @ ..] => {
            Change::AddService(service(proto, vip, sched, persist)?)
        }
        ["update-service", proto, vip, sched, persist @ ..] => {
            Change::UpdateService(service(proto, vip, sched, persist)?)
        }
        ["delete-service", proto, vip] => Change::DeleteService(parse_key(proto, vip)?),
        ["add-dest", proto, vip, rip, weight] => {
            Change::AddDestination(parse_key(proto, vip)?, dest(rip, weight)?)
        }
        ["update-dest", proto, vip, rip, weight] => {
            Change::UpdateDestination(parse_key(proto, vip)?, dest(rip, weight)?)
        }
        ["delete-dest", proto, vip, rip] => {
            Change::DeleteDestination(parse_key(proto, vip)?, dest(rip, "0")?)
        }
        other => bail!("unknown script line {other:?}"),
    })
}

fn parse_key(protocol: &str, vip: &str) -> Result<ServiceKey> {
    let addr: SocketAddr = vip.parse()?;
    Ok(ServiceKey {
        protocol: match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            other => bail!("protocol {other}"),
        },
        addr: addr.ip(),
        port: addr.port(),
    })
}
