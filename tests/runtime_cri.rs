//! Acceptance of the CRI runtime (issue 4), as root: a node network
//! namespace holding Debian's docker-registry with the test images and a
//! `paddock runtime` process, driven through its socket by a CRI client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_cri::v1::*;
use paddock_testkit::cri::Cri;
use paddock_testkit::images::{BUSYBOX, BUSYBOX_ZSTD, NGINX, PAUSE};
use paddock_testkit::netns::NetNs;
use paddock_testkit::process::Guard;
use paddock_testkit::registry::Registry;
use paddock_testkit::unique_name;

/// A node: its namespace, registry, runtime and scratch directory.
struct Node {
    ns: NetNs,
    _registry: Registry,
    dir: PathBuf,
    cgroup_root: String,
    runtime: Option<Guard>,
    cri: Cri,
}

impl Node {
    async fn start() -> Result<Node> {
        let name = unique_name("pdkrt");
        let ns = NetNs::create(&name)?;
        let registry = Registry::start(&ns)?;
        let dir = std::env::temp_dir().join(format!("paddock-{name}"));
        std::fs::create_dir_all(dir.join("net.d"))?;
        std::fs::write(
            dir.join("net.d/10-pods.conflist"),
            serde_json::json!({
                "cniVersion": "1.0.0", "name": "pods",
                "plugins": [
                    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                     "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                              "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )?;
        std::fs::write(
            dir.join("registries.yaml"),
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n  registry.k8s.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n",
        )?;
        let cgroup_root = format!("/{name}");
        let runtime = spawn_runtime(&ns, &dir, &cgroup_root)?;
        let cri = Cri::connect(&dir.join("cri.sock"), Duration::from_secs(30)).await?;
        Ok(Node {
            ns,
            _registry: registry,
            dir,
            cgroup_root,
            runtime: Some(runtime),
            cri,
        })
    }

    async fn start_runtime(&mut self) -> Result<()> {
        self.runtime = Some(spawn_runtime(&self.ns, &self.dir, &self.cgroup_root)?);
        self.cri = Cri::connect(&self.dir.join("cri.sock"), Duration::from_secs(30)).await?;
        Ok(())
    }

    /// `kill -9` of the runtime process (its containers live on).
    fn kill_runtime(&mut self) -> Result<()> {
        if let Some(runtime) = self.runtime.take() {
            runtime.kill9()?;
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("runtime.log")).unwrap_or_default()
    }

    fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir.join("logs").join(name).display().to_string(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod-{name}", self.cgroup_root),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn pull(&mut self, image: &str) -> Result<String> {
        let reply = self
            .cri
            .images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pulling {image}; runtime log:\n{}", self.log()))?;
        Ok(reply.into_inner().image_ref)
    }

    async fn run_sandbox(&mut self, config: &PodSandboxConfig) -> Result<String> {
        let reply = self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .with_context(|| format!("RunPodSandbox; runtime log:\n{}", self.log()))?;
        Ok(reply.into_inner().pod_sandbox_id)
    }

    async fn run_container(
        &mut self,
        sandbox: &str,
        sandbox_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String> {
        let id = self
            .cri
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .with_context(|| format!("CreateContainer; runtime log:\n{}", self.log()))?
            .into_inner()
            .container_id;
        self.cri
            .runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("StartContainer; runtime log:\n{}", self.log()))?;
        Ok(id)
    }

    async fn status(&mut self, container: &str) -> Result<ContainerStatus> {
        self.cri
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: container.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")
    }

    async fn wait_state(
        &mut self,
        container: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(container).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {container} is {:?}, not {state:?}; runtime log:\n{}",
                    status,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn pod_ip(&mut self, sandbox: &str) -> Result<String> {
        let status = self
            .cri
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no sandbox status")?;
        let ip = status.network.map(|n| n.ip).unwrap_or_default();
        ensure!(!ip.is_empty(), "the pod has no IP");
        Ok(ip)
    }

    async fn remove_sandbox(&mut self, sandbox: &str) -> Result<()> {
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            })
            .await
            .with_context(|| format!("StopPodSandbox; runtime log:\n{}", self.log()))?;
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.into(),
            })
            .await
            .with_context(|| format!("RemovePodSandbox; runtime log:\n{}", self.log()))?;
        Ok(())
    }

    /// What the node has that a leak would grow: mounts under the node's
    /// directory, veths in its namespace, cgroups under its cgroup root,
    /// host-local IPAM reservations, runtime state directories.
    fn resources(&self) -> Result<Resources> {
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
            .count();
        let veths = String::from_utf8(self.ns.ip(&["-o", "link", "show", "type", "veth"])?.stdout)?
            .lines()
            .count();
        // Pod and container cgroups below the node's cgroup root.
        let mut cgroups = 0;
        for controller in std::fs::read_dir("/sys/fs/cgroup")? {
            let root = controller?
                .path()
                .join(self.cgroup_root.trim_start_matches('/'));
            cgroups += count_dirs(&root).saturating_sub(1);
        }
        let ipam = std::fs::read_dir(self.dir.join("ipam/pods"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .parse::<std::net::IpAddr>()
                            .is_ok()
                    })
                    .count()
            })
            .unwrap_or(0);
        let state = ["sandboxes", "containers", "libcontainer"]
            .iter()
            .map(|d| {
                std::fs::read_dir(self.dir.join("root").join(d))
                    .map(|e| e.count())
                    .unwrap_or(0)
            })
            .sum();
        Ok(Resources {
            mounts,
            veths,
            cgroups,
            ipam,
            state,
        })
    }
}

#[derive(Debug, PartialEq)]
struct Resources {
    mounts: usize,
    veths: usize,
    cgroups: usize,
    ipam: usize,
    state: usize,
}

fn count_dirs(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            1 + entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| count_dirs(&e.path()))
                .sum::<usize>()
        }
        Err(_) => 0,
    }
}

/// `paddock runtime` inside `ns`, its state and socket in `dir`, logging
/// to `dir/runtime.log`.
fn spawn_runtime(ns: &NetNs, dir: &Path, cgroup_root: &str) -> Result<Guard> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("runtime.log"))?;
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_paddock"));
    cmd.arg("runtime")
        .arg("--listen")
        .arg(format!("unix://{}", dir.join("cri.sock").display()))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--private-registry")
        .arg(dir.join("registries.yaml"))
        .arg("--cni-conf-dir")
        .arg(dir.join("net.d"))
        .arg("--cgroup-root")
        .arg(cgroup_root)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone()?)
        .stderr(log);
    Guard::spawn("paddock runtime", cmd)
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.runtime.take());
        // Best effort after a failed test: kill what runs in our cgroups,
        // unmount what lies under our directory, remove both.
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let root = controller
                .path()
                .join(self.cgroup_root.trim_start_matches('/'));
            kill_and_remove_cgroups(&root);
        }
        let dir = self.dir.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kill_and_remove_cgroups(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_and_remove_cgroups(&entry.path());
        }
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
    {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client running sandbox create/stop/remove cycles.
struct Worker {
    cri: Cri,
    config: PodSandboxConfig,
}

impl Worker {
    async fn cycle(&mut self, name: &str) -> Result<()> {
        let mut config = self.config.clone();
        if let Some(meta) = config.metadata.as_mut() {
            meta.name = name.to_string();
            meta.uid = format!("uid-{name}");
        }
        if let Some(linux) = config.linux.as_mut() {
            linux.cgroup_parent = linux
                .cgroup_parent
                .replace("pod-cycle", &format!("pod-{name}"));
        }
        let id = self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await?;
        Ok(())
    }
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await);
    }
    results
}

fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_pod_pulls_through_a_mirror_serves_logs_execs_and_stops() -> Result<()> {
    let mut node = Node::start().await?;
    let image_ref = node.pull("nginx").await?;
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    node.pull(PAUSE).await?;
    let images = node
        .cri
        .images
        .list_images(ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    let tags: Vec<&str> = images
        .iter()
        .flat_map(|i| i.repo_tags.iter().map(String::as_str))
        .collect();
    assert!(tags.contains(&NGINX) && tags.contains(&PAUSE), "{tags:?}");

    let config = node.sandbox_config("web");
    let sandbox = node.run_sandbox(&config).await?;
    let container = node
        .run_container(
            &sandbox,
            &config,
            container_config("nginx", &image_ref, &[]),
        )
        .await?;
    let status = node
        .wait_state(
            &container,
            ContainerState::ContainerRunning,
            Duration::from_secs(20),
        )
        .await?;
    assert!(status.started_at > 0);

    let ip = node.pod_ip(&sandbox).await?;
    let url = format!("http://{ip}/");
    let ns = &node.ns;
    let page = paddock_testkit::wait::until(
        "nginx to answer",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            Ok(ns
                .run("curl", &["-sf", "--max-time", "2", &url])
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned()))
        },
    )?;
    assert!(page.contains("Welcome to nginx!"), "{page}");

    let log_path = Path::new(&config.log_directory).join("nginx/0.log");
    let log = paddock_testkit::wait::until(
        "the access log line",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            Ok(log
                .lines()
                .any(|l| l.contains(" stdout F ") && l.contains("\"GET / HTTP/1.1\" 200"))
                .then_some(log))
        },
    )?;
    for line in log.lines() {
        let mut fields = line.splitn(4, ' ');
        let time = fields.next().unwrap_or_default();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(matches!(fields.next(), Some("stdout" | "stderr")), "{line}");
        assert!(matches!(fields.next(), Some("F" | "P")), "{line}");
    }

    let exec = node
        .cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["nginx".into(), "-v".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    assert_eq!(exec.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("nginx version: nginx/"),
        "{exec:?}"
    );

    node.cri
        .runtime
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 10,
        })
        .await?;
    let status = node.status(&container).await?;
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    assert!(status.finished_at >= status.started_at);

    node.remove_sandbox(&sandbox).await?;
    let left = node
        .cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert!(left.is_empty(), "{left:?}");
    let missing = node
        .cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: container,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_over_its_memory_limit_is_oom_killed() -> Result<()> {
    let mut node = Node::start().await?;
    let image = node.pull(BUSYBOX).await?;
    let config = node.sandbox_config("hog");
    let sandbox = node.run_sandbox(&config).await?;
    let mut hog = container_config(
        "hog",
        &image,
        &[
            "sh",
            "-c",
            "x=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived",
        ],
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let container = node.run_container(&sandbox, &config, hog).await?;
    let status = node
        .wait_state(
            &container,
            ContainerState::ContainerExited,
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(
        (status.reason.as_str(), status.exit_code),
        ("OOMKilled", 137),
        "{status:?}"
    );
    node.remove_sandbox(&sandbox).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_sandbox_cycles_leak_nothing() -> Result<()> {
    let node = Node::start().await?;
    let before = node.resources()?;
    let started = Instant::now();
    // Four kubelet-like workers at once, 125 cycles each.
    let workers = (0..4).map(|w| {
        let mut node = Worker {
            cri: node.cri.clone(),
            config: node.sandbox_config("cycle"),
        };
        tokio::spawn(async move {
            for i in 0..125 {
                node.cycle(&format!("cycle-{w}-{i}")).await?;
            }
            anyhow::Ok(())
        })
    });
    for worker in futures_join(workers).await {
        worker
            .context("worker task")?
            .with_context(|| format!("runtime log:\n{}", node.log()))?;
    }
    eprintln!("500 sandbox cycles in {:?}", started.elapsed());
    assert_eq!(node.resources()?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_killed_and_restarted_still_lists_and_stops_its_pod() -> Result<()> {
    let mut node = Node::start().await?;
    let image = node.pull(BUSYBOX_ZSTD).await?;
    let config = node.sandbox_config("survivor");
    let sandbox = node.run_sandbox(&config).await?;
    let sleeper = node
        .run_container(
            &sandbox,
            &config,
            container_config("sleeper", &image, &["sleep", "3600"]),
        )
        .await?;
    let quitter = node
        .run_container(
            &sandbox,
            &config,
            container_config(
                "quitter",
                &image,
                &["sh", "-c", "sleep 2; echo bye; exit 3"],
            ),
        )
        .await?;
    node.wait_state(
        &sleeper,
        ContainerState::ContainerRunning,
        Duration::from_secs(20),
    )
    .await?;
    node.kill_runtime()?;
    tokio::time::sleep(Duration::from_secs(3)).await; // the quitter exits meanwhile
    node.start_runtime().await?;

    let listed = node
        .cri
        .runtime
        .list_containers(ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    let state_of = |id: &str| listed.iter().find(|c| c.id == id).map(|c| c.state);
    assert_eq!(
        state_of(&sleeper),
        Some(ContainerState::ContainerRunning as i32)
    );
    assert_eq!(
        state_of(&quitter),
        Some(ContainerState::ContainerExited as i32)
    );
    let status = node.status(&quitter).await?;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    let log = std::fs::read_to_string(Path::new(&config.log_directory).join("quitter/0.log"))?;
    assert!(log.contains(" stdout F bye"), "{log}");

    let before = node.resources()?;
    assert!(before.mounts > 0);
    node.remove_sandbox(&sandbox).await?;
    let after = node.resources()?;
    assert_eq!(
        (
            after.mounts,
            after.veths,
            after.cgroups,
            after.ipam,
            after.state
        ),
        (0, 0, 0, 0, 0),
        "{after:?}"
    );
    Ok(())
}
