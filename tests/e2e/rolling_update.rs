//! Issue 8, test 2: `kubectl apply -f manifests/`, then a new image and
//! another replica count applied again: the rolling update serves a client
//! loop on the LoadBalancer address without one failed request.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use paddock_testkit::lab::{KubectlVersion, Lab};
use paddock_testkit::service_lab::RequestLoop;
use paddock_testkit::timings::Timings;
use paddock_testkit::wait;

use super::*;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
const NEW_IMAGE: &str = "nginx:1.27";

/// Publishes the "new version" of nginx the update rolls out, as a user
/// pushing a tag would.
pub fn publish_new_image(lab: &Lab) -> Result<()> {
    lab.push_tag("library/nginx:latest", &format!("library/{NEW_IMAGE}"))
}

/// Apply, change, re-apply under a client loop; deletes what it made.
pub fn rolling_update(lab: &Lab, version: KubectlVersion) -> Result<()> {
    let k = lab.kubectl(version)?;
    let mut timings = Timings::start(&format!("the rolling update with kubectl {}", k.version()));
    let manifests = copy_manifests(&lab.dir().join(format!("manifests-{}", k.version())))?;
    let dir = manifests.display().to_string();

    let out = k.run(&["apply", "-f", &dir])?;
    for created in [
        "pod/nginx created",
        "service/nginx created",
        "deployment.apps/deploy-nginx created",
        "service/deploy-nginx created",
    ] {
        ensure!(out.contains(created), "apply -f manifests/ printed:\n{out}");
    }
    timed(&mut timings, "3 replicas Ready", || {
        wait_pods_ready(&k, &["-l", "app=deploy-nginx"], 3, POD_READY)
    })?;
    let lb_ip: IpAddr = timed(&mut timings, "EXTERNAL-IP", || {
        wait_external_ip(&k, "deploy-nginx", PROGRAMMED)
    })?
    .parse()?;
    timed(&mut timings, "first answer from the EXTERNAL-IP", || {
        wait_served(&lab.client, &format!("http://{lb_ip}/"), PROGRAMMED)
    })?;

    let requests = RequestLoop::start(&lab.client, SocketAddr::new(lb_ip, 80))?;
    let deployment = manifests.join("nginx-deployment.yaml");
    let changed = std::fs::read_to_string(&deployment)?
        .replace("image: nginx\n", &format!("image: {NEW_IMAGE}\n"))
        .replace("replicas: 3\n", "replicas: 4\n");
    std::fs::write(&deployment, changed)?;
    let started = Instant::now();
    let out = k.run(&["apply", "-f", &dir])?;
    ensure!(
        out.contains("deployment.apps/deploy-nginx configured")
            && out.contains("service/deploy-nginx unchanged")
            && out.contains("pod/nginx unchanged"),
        "the second apply printed:\n{out}"
    );
    let status = k.run(&[
        "rollout",
        "status",
        "deployment/deploy-nginx",
        "--timeout=300s",
    ])?;
    ensure!(status.contains("successfully rolled out"), "{status}");
    timings.since("rollout to 4 replicas of the new image", started);
    let pods = wait_pods_ready(&k, &["-l", "app=deploy-nginx"], 4, POD_READY)?;
    // The pods that stay (old ones may still be Terminating, as kubectl shows).
    let images: Vec<String> = items(&k.json(&["pods", "-l", "app=deploy-nginx"])?)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    ensure!(
        images.len() == 4 && images.iter().all(|i| i == NEW_IMAGE),
        "images of the pods after the rollout: {images:?}"
    );
    let ips: Vec<String> = pods.iter().map(|p| p.ip.clone()).collect();
    wait_endpoints(&k, "deploy-nginx", &ips, PROGRAMMED)?;
    // The old pods finish terminating while the loop still runs.
    wait::until(
        "the old pods to be gone",
        POD_READY,
        Duration::from_millis(500),
        || Ok((items(&k.json(&["pods", "-l", "app=deploy-nginx"])?).len() == 4).then_some(())),
    )?;
    let (served, failed) = requests.stop();
    println!(
        "kubectl {}: {served} requests served during the rolling update, {failed} failed",
        k.version()
    );
    ensure!(
        failed == 0,
        "{failed} of {} requests failed during the rolling update",
        served + failed
    );
    ensure!(served > 10, "only {served} requests were made");

    let out = k.run(&["delete", "-f", &dir])?;
    ensure!(
        out.contains("deployment.apps \"deploy-nginx\" deleted"),
        "{out}"
    );
    wait_pods_gone(&k, &["-l", "app=deploy-nginx"], POD_READY)?;
    wait_pods_gone(&k, &["-l", "run=nginx"], POD_READY)?;
    Ok(())
}

/// A copy of `manifests/` the test may change.
fn copy_manifests(to: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(MANIFESTS).context("reading manifests/")? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(to.to_path_buf())
}
