//! Issue 8, test 4: workers started before the master — as when the
//! machines of the lab boot in any order — wait for it, and join once it is
//! up. The master was set up once before (its CA made, the token handed to
//! the workers), then stopped.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::lab::{Daemon, KUBECTLS, Lab};
use paddock_testkit::timings::Timings;

use super::*;

/// How long the workers run alone before the master comes up: long enough
/// for several join attempts to fail.
const ALONE: Duration = Duration::from_secs(8);

/// Brings a prepared lab up workers first; returns with every node Ready.
pub fn join_order(lab: &mut Lab) -> Result<()> {
    let mut timings = Timings::start("workers before the master");
    // The master once, for its CA and join token; then it is down.
    lab.start_server()?;
    lab.nodes[0].stop()?;

    for index in 1..lab.nodes.len() {
        lab.start_worker(index)?;
    }
    std::thread::sleep(ALONE);
    for worker in &mut lab.nodes[1..] {
        worker
            .check_running()
            .context("a worker gave up while the master was down")?;
        let log = worker.log(Daemon::Agent);
        ensure!(
            log.contains("waiting for the server"),
            "{}'s agent does not say it waits for the server:\n{log}",
            worker.name
        );
    }

    let master_up = Instant::now();
    lab.start_master()?;
    timings.since("the master serving again", master_up);
    let names = lab.node_names();
    lab.wait_ready(&names, Duration::from_secs(180))?;
    timings.since("all 4 nodes Ready once the master is up", master_up);

    for version in KUBECTLS {
        let k = lab.kubectl(version)?;
        let nodes = k.run(&["get", "nodes"])?;
        for name in &names {
            let row = nodes.lines().find(|l| l.starts_with(name.as_str()));
            ensure!(
                row.and_then(|r| r.split_whitespace().nth(1)) == Some("Ready"),
                "kubectl {} get nodes:\n{nodes}",
                k.version()
            );
        }
        // The workers that joined late run pods.
        let pod = format!("nginx-{}", k.version().replace('.', "-"));
        k.run(&["run", &pod, "--image=nginx"])?;
        let row = wait_pods_ready(
            &k,
            &["--field-selector", &format!("metadata.name={pod}")],
            1,
            POD_READY,
        )?
        .remove(0);
        ensure!(row.node.starts_with('w'), "{row:?} is not on a worker");
        delete(&k, "pod", &pod)?;
    }
    Ok(())
}
