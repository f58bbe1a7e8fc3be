//! Acceptance of the agent on containerd 1.6 + runc (issue 9): the same
//! scenarios as on Paddock's runtime (`agent/mod.rs`), with the agent
//! pointed at containerd's socket, containerd configured by
//! `scripts/containerd-config.sh` (`make containerd-config`).

mod agent;

use anyhow::Result;
use paddock_testkit::cluster::Runtime;

#[test]
fn nginx_runs_serves_logs_and_survives_an_agent_crash() -> Result<()> {
    agent::nginx_runs_serves_logs_and_survives_an_agent_crash(Runtime::Containerd)
}

#[test]
fn crash_loops_back_off_and_readiness_gates_ready() -> Result<()> {
    agent::crash_loops_back_off_and_readiness_gates_ready(Runtime::Containerd)
}

#[test]
fn delete_stops_within_the_grace_period() -> Result<()> {
    agent::delete_stops_within_the_grace_period(Runtime::Containerd)
}

#[test]
fn two_hundred_pods_leave_nothing_behind() -> Result<()> {
    agent::two_hundred_pods_leave_nothing_behind(Runtime::Containerd)
}
