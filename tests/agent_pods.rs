//! Acceptance of the agent (issue 5) on Paddock's embedded runtime.

mod agent;

use anyhow::Result;
use paddock_testkit::cluster::Runtime;

#[test]
fn nginx_runs_serves_logs_and_survives_an_agent_crash() -> Result<()> {
    agent::nginx_runs_serves_logs_and_survives_an_agent_crash(Runtime::Paddock)
}
