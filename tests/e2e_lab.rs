//! Issue 8 end to end: the original Vagrant lab's story on the 4-node lab
//! (master m-k8s, workers w1-k8s … w3-k8s in network namespaces, the user's
//! laptop with kubectl and curl), typed with stock kubectl 1.20.2 and 1.32.
//! One lab serves every scenario, in the order a user lives them: the
//! machines boot workers first; the walkthrough; `kubectl apply` and a
//! rolling update; then a worker is lost. Each prints its timings. The
//! workers run Paddock's runtime (or `RUNTIME=containerd`). Two more labs
//! run the walkthrough: one with containerd on the workers, and the
//! single-node path, `paddock server` alone.

mod e2e;

use anyhow::{Context, Result};
use e2e::*;
use paddock_testkit::lab::{KUBECTLS, KubectlVersion, Lab, Options, Runtime};
use paddock_testkit::timings::Timings;

#[test]
fn the_vagrant_lab_story_with_kubectl_1_20_and_1_32() -> Result<()> {
    let mut lab = Lab::prepare(PADDOCK.as_ref(), Options::from_env()?)?;
    let joined = join_order::join_order(&mut lab);
    joined.with_context(|| lab.logs())?;
    check_runtimes(&lab, &lab.kubectl(KubectlVersion::V1_20)?)?;

    let mut scenarios = Scenarios::default();
    for version in KUBECTLS {
        let outcome = walkthrough::walkthrough(&lab, version);
        scenarios.check(
            &lab,
            &format!("the walkthrough, kubectl {version:?}"),
            outcome,
        );
    }
    rolling_update::publish_new_image(&lab)?;
    for version in KUBECTLS {
        let outcome = rolling_update::rolling_update(&lab, version);
        scenarios.check(
            &lab,
            &format!("the rolling update, kubectl {version:?}"),
            outcome,
        );
    }
    let outcome = lost_worker::lost_worker(&mut lab);
    scenarios.check(&lab, "a lost worker", outcome);
    scenarios.finish()
}

#[test]
fn the_walkthrough_with_containerd_on_the_workers() -> Result<()> {
    let options = Options {
        runtime: Runtime::Containerd,
        ..Options::default()
    };
    walkthrough_lab("the lab with containerd on the workers", options)
}

#[test]
fn the_walkthrough_on_paddock_server_alone() -> Result<()> {
    let options = Options {
        workers: 0,
        ..Options::default()
    };
    walkthrough_lab("paddock server alone", options)
}

/// A lab of its own for the walkthrough, with every kubectl.
fn walkthrough_lab(title: &str, options: Options) -> Result<()> {
    let mut timings = Timings::start(title);
    let nodes = options.workers + 1;
    let lab = timed(&mut timings, &format!("{nodes} node(s) Ready"), || {
        Lab::start(PADDOCK.as_ref(), options)
    })?;
    drop(timings);
    let mut scenarios = Scenarios::default();
    for version in KUBECTLS {
        let outcome = lab
            .kubectl(version)
            .and_then(|k| check_runtimes(&lab, &k))
            .and_then(|()| walkthrough::walkthrough(&lab, version));
        let name = format!("the walkthrough on {title}, kubectl {version:?}");
        scenarios.check(&lab, &name, outcome);
    }
    scenarios.finish()
}
