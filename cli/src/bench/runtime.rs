//! The runtime benchmarks, side by side in one run:
//! - pod start: RunPodSandbox + CreateContainer + StartContainer until
//!   ContainerStatus says running, nginx from the same registry and the same
//!   CNI list, paddock's runtime against containerd 1.6 + runc, alternating;
//! - container lifecycle: a /bin/true bundle created, started, waited for
//!   and deleted by libcontainer (as paddock's monitor does), crun and runc,
//!   timed by hyperfine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_cri::v1::{ContainerConfig, ContainerMetadata, ContainerState, ImageSpec};
use paddock_testkit::cri_node::{Engine, Node};
use paddock_testkit::images;
use paddock_testkit::netns::run as checked;

#[derive(clap::Args)]
pub struct Args {
    /// Pods started per runtime.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// hyperfine runs per lifecycle command.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Where to write the Markdown report (also printed).
    #[arg(long, default_value = "target/bench/runtime.md")]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct RunBundleArgs {
    /// libcontainer's state directory.
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    id: String,
}

pub fn run_bundle(args: RunBundleArgs) -> Result<i32> {
    paddock_runtime::run_to_completion(&args.root, &args.bundle, &args.id)
}

pub async fn run(args: Args) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the runtime benchmark runs as root"
    );
    let exe = std::env::current_exe()?;
    let mut ours = Node::start(Engine::Paddock(exe.clone())).await?;
    let mut theirs = Node::start(Engine::Containerd)
        .await
        .context("starting containerd")?;
    let ours_image = ours.pull(images::NGINX).await?;
    let theirs_image = theirs.pull(images::NGINX).await?;
    theirs.pull(images::PAUSE).await?;

    // Warm both up (page cache, first CNI runs), then alternate.
    for i in 0..3 {
        start_pod(&mut ours, &ours_image, &format!("warm-{i}")).await?;
        start_pod(&mut theirs, &theirs_image, &format!("warm-{i}")).await?;
    }
    let (mut ours_ms, mut theirs_ms) = (Vec::new(), Vec::new());
    for i in 0..args.pods {
        ours_ms.push(start_pod(&mut ours, &ours_image, &format!("pod-{i}")).await?);
        theirs_ms.push(start_pod(&mut theirs, &theirs_image, &format!("pod-{i}")).await?);
    }
    drop(ours);
    drop(theirs);

    let lifecycle = lifecycle(&exe, args.runs)?;
    let report = report(
        args.pods,
        &mut ours_ms,
        &mut theirs_ms,
        &lifecycle,
        args.runs,
    );
    super::publish(&report, &args.out)
}

/// Milliseconds from RunPodSandbox to a running nginx; the pod is removed
/// afterwards, untimed.
async fn start_pod(node: &mut Node, image: &str, name: &str) -> Result<f64> {
    let config = node.sandbox_config(name);
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "nginx".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        log_path: "nginx/0.log".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let sandbox = node.run_sandbox(&config).await?;
    let id = node.run_container(&sandbox, &config, container).await?;
    node.wait_state(
        &id,
        ContainerState::ContainerRunning,
        Duration::from_secs(30),
        Duration::from_millis(1),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    node.remove_sandbox(&sandbox).await?;
    Ok(elapsed)
}

/// hyperfine's median and mean per command, in milliseconds.
struct Timing {
    name: String,
    median: f64,
    mean: f64,
    stddev: f64,
}

fn lifecycle(exe: &Path, runs: usize) -> Result<Vec<Timing>> {
    let dir = std::env::temp_dir().join(paddock_testkit::unique_name("paddock-lifecycle-"));
    let result = lifecycle_in(exe, runs, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn lifecycle_in(exe: &Path, runs: usize, dir: &Path) -> Result<Vec<Timing>> {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(dir)?;
    let layout = images::oci_layout("busybox")?;
    checked(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle),
    )?;
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let json = dir.join("hyperfine.json");
    let b = bundle.display();
    let d = dir.display();
    let commands = [
        (
            "paddock (libcontainer)".to_string(),
            format!(
                "{} bench run-bundle --root {d}/paddock --bundle {b} --id lc-paddock",
                exe.display()
            ),
        ),
        (
            "crun".to_string(),
            format!("crun --root {d}/crun run --bundle {b} lc-crun"),
        ),
        (
            "runc".to_string(),
            format!("runc --root {d}/runc run --bundle {b} lc-runc"),
        ),
    ];
    // crun refuses this hybrid host's cgroup2 mount: hide it, for all three,
    // in a private mount namespace.
    let mut script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; exec hyperfine -N --warmup 3 --runs {runs} --export-json {}",
        json.display()
    );
    for (name, command) in &commands {
        script.push_str(&format!(" -n '{name}' '{command}'"));
    }
    let out = checked(Command::new("unshare").env("RUST_LOG", "error").args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]))?;
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    let results = results["results"].as_array().context("hyperfine results")?;
    let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 1000.0;
    Ok(results
        .iter()
        .map(|r| Timing {
            name: r["command"].as_str().unwrap_or_default().to_string(),
            median: ms(&r["median"]),
            mean: ms(&r["mean"]),
            stddev: ms(&r["stddev"]),
        })
        .collect())
}

/// Nearest-rank percentile of sorted `values`.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(
    pods: usize,
    ours: &mut [f64],
    theirs: &mut [f64],
    lifecycle: &[Timing],
    runs: usize,
) -> String {
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    let row = |label: &str, p: f64| {
        let (a, b) = (percentile(ours, p), percentile(theirs, p));
        format!("| {label} | {a:.1} | {b:.1} | {:.2}× |\n", a / b)
    };
    let mut out = format!(
        "## Pod start through CRI ({pods} pods each, alternating)\n\n\
         RunPodSandbox + CreateContainer + StartContainer until ContainerStatus is RUNNING (nginx, \
         same registry, same CNI bridge list), in ms.\n\n\
         | | paddock runtime | containerd 1.6 + runc | paddock / containerd |\n|---|---:|---:|---:|\n"
    );
    out.push_str(&row("median", 50.0));
    out.push_str(&row("p99", 99.0));
    out.push_str(&format!(
        "\n## Container lifecycle: /bin/true bundle, create → start → wait → delete (hyperfine, {runs} runs)\n\n\
         | | median ms | mean ± σ ms |\n|---|---:|---:|\n"
    ));
    for t in lifecycle {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} ± {:.1} |\n",
            t.name, t.median, t.mean, t.stddev
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 25.0);
        assert_eq!(percentile(&values, 99.0), 50.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
