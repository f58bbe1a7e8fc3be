//! The VM test bed the IPVS tests stand on: User-Mode Linux nodes on one
//! bridge, commands in them, and IPVS working inside (this host's kernel
//! has none).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use paddock_testkit::uml::{Lab, LabSpec};

#[test]
fn a_vm_runs_host_binaries_and_reports_output_and_exit_status() -> Result<()> {
    let lab = Lab::boot(LabSpec::default())?;
    let node = lab.node(0);

    let out = node.exec("hostname; echo oops >&2; exit 3")?;
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout, "node-10\n");
    assert_eq!(out.stderr, "oops\n");

    // The host's own binaries, the UML kernel's modules, and a root that is
    // writable inside the VM only.
    let paddock = env!("CARGO_BIN_EXE_paddock");
    let version = node.run(&format!("{paddock} --version"))?;
    assert!(version.starts_with("paddock "), "{version}");
    node.run("lsmod | grep -q '^ip_vs '")?;
    node.run("echo scratch > /etc/paddock-vm-probe")?;
    assert!(!std::path::Path::new("/etc/paddock-vm-probe").exists());

    // A long-running command stops on a signal to its session.
    let sleeper = node.spawn("sleep 600 & sleep 600; echo never")?;
    sleeper.signal("TERM")?;
    let out = sleeper.wait(Duration::from_secs(10))?;
    assert_eq!(out.status, 128 + 15);
    assert_eq!(node.run("pgrep -c -x sleep || true")?.trim(), "0");
    Ok(())
}

#[test]
fn three_nodes_on_one_bridge_reach_each_other_and_the_client() -> Result<()> {
    let lab = Lab::boot(LabSpec {
        nodes: 3,
        ..LabSpec::default()
    })?;
    for from in lab.nodes() {
        for to in lab.nodes() {
            from.run(&format!("busybox ping -c 1 -W 5 {}", to.ip()))?;
        }
        from.run(&format!("busybox ping -c 1 -W 5 {}", lab.client_ip()))?;
        lab.net().run(
            "busybox",
            &["ping", "-c", "1", "-W", "5", &from.ip().to_string()],
        )?;
    }
    Ok(())
}

#[test]
fn an_ipvs_virtual_service_round_robins_across_two_nodes() -> Result<()> {
    let lab = Lab::boot(LabSpec {
        nodes: 3,
        ..LabSpec::default()
    })?;
    let (director, backends) = (lab.node(0), &lab.nodes()[1..]);
    let _servers = [
        backends[0].serve_http(80, backends[0].name())?,
        backends[1].serve_http(80, backends[1].name())?,
    ];
    director.run(&format!(
        "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1
         ip link add kube-ipvs0 type dummy
         ip addr add 10.96.0.10/32 dev kube-ipvs0
         ipvsadm -A -t 10.96.0.10:80 -s rr
         ipvsadm -a -t 10.96.0.10:80 -r {}:80 -m
         ipvsadm -a -t 10.96.0.10:80 -r {}:80 -m
         iptables -t nat -A POSTROUTING -m ipvs --vaddr 10.96.0.10/32 --vport 80 -j MASQUERADE",
        backends[0].ip(),
        backends[1].ip()
    ))?;
    lab.net().ip(&[
        "route",
        "add",
        "10.96.0.0/12",
        "via",
        &director.ip().to_string(),
    ])?;

    let answers = lab.client_tally("http://10.96.0.10/", 20)?;
    let expected = BTreeMap::from([("node-11".to_string(), 10), ("node-12".to_string(), 10)]);
    ensure!(answers == expected, "answers through the VIP: {answers:?}");
    Ok(())
}
