//! Watches: `kubectl get pods --watch` sees ADDED, MODIFIED and DELETED; a
//! watch from a compacted revision gets 410 Gone; kubectl's informer then
//! re-lists and carries on.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::{Server, free_port};
use paddock_testkit::wait;
use serde_json::Value;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");
/// Compact every second, keeping no history: old revisions go fast.
const COMPACT_FAST: &[&str] = &[
    "--compact-interval-seconds",
    "1",
    "--compact-retention-seconds",
    "0",
];

fn watch_events(k: &Kubectl) -> Result<()> {
    let mut watcher = k.spawn(&["get", "pods", "--watch", "--output-watch-events"])?;
    // Wait for the watch to be established before changing anything.
    std::thread::sleep(Duration::from_millis(1500));
    k.run(&["run", "watched", "--image=nginx"])?;
    k.run(&["label", "pod", "watched", "tier=web"])?;
    k.run(&["delete", "pod", "watched"])?;
    std::thread::sleep(Duration::from_millis(1000));
    let _ = watcher.kill();
    let mut out = String::new();
    watcher
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    let events: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("watched"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The scheduler may modify the pending pod too (PodScheduled=False).
    let modified = &events[1..events.len().saturating_sub(1).max(1)];
    ensure!(
        events.first() == Some(&"ADDED")
            && events.last() == Some(&"DELETED")
            && !modified.is_empty()
            && modified.iter().all(|e| *e == "MODIFIED"),
        "kubectl {} saw:\n{out}",
        k.version
    );
    Ok(())
}

#[test]
fn kubectl_get_watch_sees_added_modified_deleted() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    watch_events(&Kubectl::v1_32(&server.kubeconfig(), server.data_dir()))?;
    watch_events(&Kubectl::v1_20(&server.kubeconfig(), server.data_dir())?)
}

#[test]
fn watch_from_a_compacted_revision_gets_410() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), COMPACT_FAST)?;
    let k = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    k.run(&["run", "old", "--image=nginx"])?;
    let rv = k.run(&[
        "get",
        "pod",
        "old",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ])?;
    k.run(&["label", "pod", "old", "changed=yes"])?;
    let path =
        format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&timeoutSeconds=2");
    let event = wait::until(
        "the log to be compacted",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let out = server.curl(&[&path])?;
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let event: Value = serde_json::from_str(&first).unwrap_or(Value::Null);
            Ok((event["type"] == "ERROR").then_some(event))
        },
    )?;
    let status = &event["object"];
    ensure!(
        status["kind"] == "Status" && status["code"] == 410 && status["reason"] == "Expired",
        "{event}"
    );
    // A list gives a current revision to watch from again.
    let fresh = k.run(&["get", "pods", "-o", "jsonpath={.metadata.resourceVersion}"])?;
    let path =
        format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={fresh}&timeoutSeconds=1");
    let out = server.curl(&[&path])?;
    ensure!(
        !String::from_utf8_lossy(&out.stdout).contains("\"ERROR\""),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn kubectl_relists_when_its_watch_revision_was_compacted() -> Result<()> {
    let mut server = Server::start(Path::new(PADDOCK), COMPACT_FAST)?;
    let kubeconfig = server.data_dir().join("first.kubeconfig");
    std::fs::copy(server.kubeconfig(), &kubeconfig)?;
    let k = Kubectl::v1_32(&kubeconfig, server.data_dir());
    k.run(&["run", "slow", "--image=nginx"])?;
    // `kubectl wait` runs an informer: it lists, then watches from the list's revision.
    let mut waiter = k.spawn(&[
        "wait",
        "--for=condition=Ready",
        "pod/slow",
        "--timeout=90s",
        "-v=6",
    ])?;
    std::thread::sleep(Duration::from_millis(1500));

    // The server goes away; while kubectl cannot reach it, the pod becomes
    // Ready and the log is compacted past the revision kubectl watches from.
    server.kill9()?;
    let elsewhere = free_port()?;
    server.restart_on(elsewhere)?;
    let other = Kubectl::v1_32(&server.kubeconfig(), server.data_dir());
    other.run(&[
        "patch",
        "pod",
        "slow",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])?;
    for i in 0..3 {
        other.run(&["run", &format!("filler-{i}"), "--image=nginx"])?;
    }
    std::thread::sleep(Duration::from_millis(2500));
    server.stop()?;
    server.restart()?;

    let status = wait::until(
        "kubectl wait to finish",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || Ok(waiter.try_wait()?),
    )?;
    let mut log = String::new();
    waiter
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut log)?;
    let mut out = String::new();
    waiter
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)?;
    ensure!(
        status.success() && out.contains("condition met"),
        "kubectl wait failed: {out}\n{log}"
    );
    ensure!(
        log.contains("too old resource version"),
        "kubectl did not see 410 Gone:\n{log}"
    );
    Ok(())
}
