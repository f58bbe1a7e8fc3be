//! Acceptance of the CRI runtime (issue 4), as root: a node network
//! namespace holding Debian's docker-registry with the test images and a
//! `paddock runtime` process, driven through its socket by a CRI client.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_cri::v1::*;
use paddock_testkit::cri::Cri;
use paddock_testkit::cri_node::{Engine, Node, Resources};
use paddock_testkit::images::{BUSYBOX, BUSYBOX_MULTI, BUSYBOX_ZSTD, NGINX, PAUSE};

async fn node() -> Result<Node> {
    Node::start(Engine::Paddock(env!("CARGO_BIN_EXE_paddock").into())).await
}

const POLL: Duration = Duration::from_millis(50);

/// CreateContainer + StartContainer, then waits until it runs.
async fn start(
    node: &mut Node,
    sandbox: &str,
    config: &PodSandboxConfig,
    container: ContainerConfig,
) -> Result<String> {
    let id = node.run_container(sandbox, config, container).await?;
    node.wait_state(
        &id,
        ContainerState::ContainerRunning,
        Duration::from_secs(20),
        POLL,
    )
    .await?;
    Ok(id)
}

/// The runtime's own state directories under its root.
fn state_dirs(node: &Node) -> usize {
    ["sandboxes", "containers", "libcontainer"]
        .iter()
        .map(|d| {
            std::fs::read_dir(node.dir().join("root").join(d))
                .map(|e| e.count())
                .unwrap_or(0)
        })
        .sum()
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
    let mut node = node().await?;
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
            POLL,
        )
        .await?;
    assert!(status.started_at > 0);
    // created by image id, reported by name and repo digest, as containerd does
    assert_eq!(status.image.map(|i| i.image).as_deref(), Some(NGINX));
    assert!(
        status
            .image_ref
            .starts_with("docker.io/library/nginx@sha256:"),
        "{}",
        status.image_ref
    );

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
    let mut node = node().await?;
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
            POLL,
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
    let node = node().await?;
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
    assert_eq!(state_dirs(&node), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_killed_and_restarted_still_lists_and_stops_its_pod() -> Result<()> {
    let mut node = node().await?;
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
        POLL,
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
    assert!(
        before.mounts > 0 && before.veths == 1 && before.cgroups > 0 && before.ipam == 1,
        "{before:?}"
    );
    node.remove_sandbox(&sandbox).await?;
    let nothing = Resources {
        mounts: 0,
        veths: 0,
        cgroups: 0,
        ipam: 0,
    };
    assert_eq!(node.resources()?, nothing);
    assert_eq!(state_dirs(&node), 0);
    Ok(())
}

/// A WebSocket to a streaming URL the runtime returned, speaking
/// `v5.channel.k8s.io`.
async fn stream(
    node: &Node,
    url: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .context("a http:// URL")?;
    let tcp = node.connect(addr.parse()?).await?;
    let mut request = url.replace("http://", "ws://").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
    let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"v5.channel.k8s.io"[..])
    );
    Ok(ws)
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_port_forward_stream_over_websockets() -> Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut node = node().await?;
    let image = node.pull(BUSYBOX).await?;
    let config = node.sandbox_config("streams");
    let sandbox = node.run_sandbox(&config).await?;
    let web = start(
        &mut node,
        &sandbox,
        &config,
        container_config(
            "web",
            &image,
            &["sh", "-c", "mkdir -p /www && echo hello-forwarded > /www/index.html && exec httpd -f -p 8080 -h /www"],
        ),
    )
    .await?;

    // exec: stdin in, stdout and stderr out, the exit code on the error channel
    let url = node
        .cri
        .runtime
        .exec(ExecRequest {
            container_id: web.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "read x; echo got $x; echo oops >&2; exit 7".into(),
            ],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await?
        .into_inner()
        .url;
    let mut ws = stream(&node, &url).await?;
    ws.send(Message::binary(b"\x00hello\n".to_vec())).await?;
    ws.send(Message::binary(vec![255, 0])).await?;
    let (mut stdout, mut stderr, mut error) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(message) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await? {
        match message? {
            Message::Binary(data) if !data.is_empty() => match data[0] {
                1 => stdout.extend_from_slice(&data[1..]),
                2 => stderr.extend_from_slice(&data[1..]),
                3 => error.extend_from_slice(&data[1..]),
                other => panic!("unexpected channel {other}"),
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "got hello\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "oops\n");
    let status: serde_json::Value = serde_json::from_slice(&error)?;
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // exec with a tty: one output stream, the terminal's
    let url = node
        .cri
        .runtime
        .exec(ExecRequest {
            container_id: web.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "test -t 0 && test -t 1 && echo on-a-tty".into(),
            ],
            tty: true,
            stdin: false,
            stdout: true,
            stderr: false,
        })
        .await?
        .into_inner()
        .url;
    let mut ws = stream(&node, &url).await?;
    let mut terminal = Vec::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await? {
        match message? {
            Message::Binary(data) if data.first() == Some(&1) => {
                terminal.extend_from_slice(&data[1..])
            }
            Message::Binary(data) if data.first() == Some(&3) => {
                let status: serde_json::Value = serde_json::from_slice(&data[1..])?;
                assert_eq!(status["status"], "Success", "{status}");
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&terminal).trim_end(), "on-a-tty");

    // port-forward: port 8080 of the pod on channels 0 (data) and 1 (errors)
    let url = node
        .cri
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: sandbox.clone(),
            port: vec![8080],
        })
        .await?
        .into_inner()
        .url;
    let mut ws = stream(&node, &url).await?;
    let mut opened = Vec::new();
    while opened.len() < 2 {
        if let Some(Message::Binary(data)) = ws.next().await.transpose()? {
            opened.push(data.to_vec());
        }
    }
    let port = 8080u16.to_le_bytes();
    assert_eq!(
        opened,
        [vec![0, port[0], port[1]], vec![1, port[0], port[1]]]
    );
    ws.send(Message::binary(b"\x00GET / HTTP/1.0\r\n\r\n".to_vec()))
        .await?;
    let mut body = Vec::new();
    while !String::from_utf8_lossy(&body).contains("hello-forwarded") {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await? {
            Some(Ok(Message::Binary(data))) if data.first() == Some(&0) => {
                body.extend_from_slice(&data[1..])
            }
            Some(Ok(Message::Binary(data))) => {
                panic!("error channel: {}", String::from_utf8_lossy(&data[1..]))
            }
            Some(Ok(_)) => {}
            other => panic!("the forwarded connection ended early: {other:?}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&body).contains(" 200 OK"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    ws.close(None).await?;

    // a used session is gone
    let reused = stream(&node, &url).await;
    assert!(reused.is_err());
    node.remove_sandbox(&sandbox).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_are_not_found_and_bad_requests_invalid() -> Result<()> {
    let mut node = node().await?;
    let rt = &mut node.cri.runtime;
    let unknown = "0123456789abcdef".repeat(4);
    assert_eq!(
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: unknown.clone(),
            verbose: false
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        rt.start_container(StartContainerRequest {
            container_id: unknown.clone()
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        rt.exec_sync(ExecSyncRequest {
            container_id: unknown.clone(),
            cmd: vec!["true".into()],
            timeout: 1
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: unknown.clone(),
            config: Some(container_config("c", BUSYBOX, &["true"])),
            sandbox_config: None,
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::NotFound
    );
    // removing what is gone already is fine, as CRI asks
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: unknown.clone(),
    })
    .await?;
    rt.remove_container(RemoveContainerRequest {
        container_id: unknown,
    })
    .await?;

    let no_metadata = PodSandboxConfig::default();
    assert_eq!(
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(no_metadata),
            runtime_handler: String::new()
        })
        .await
        .unwrap_err()
        .code(),
        tonic::Code::InvalidArgument
    );
    let bad_image = node.cri.images.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: "no spaces allowed".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        bad_image.await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // without a CNI network list the node's network is not ready
    let conflist = node.dir().join("net.d/10-pods.conflist");
    let saved = std::fs::read(&conflist)?;
    std::fs::remove_file(&conflist)?;
    let network_ready = |status: StatusResponse| {
        status
            .status
            .into_iter()
            .flat_map(|s| s.conditions)
            .find(|c| c.r#type == "NetworkReady")
            .map(|c| (c.status, c.reason))
    };
    let status = node
        .cri
        .runtime
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert_eq!(
        network_ready(status),
        Some((false, "NetworkPluginNotReady".to_string()))
    );
    let refused = node
        .cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(node.sandbox_config("no-network")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(
        node.resources()?,
        Resources {
            mounts: 0,
            veths: 0,
            cgroups: 0,
            ipam: 0
        }
    );
    assert_eq!(state_dirs(&node), 0, "a refused sandbox leaves nothing");
    std::fs::write(&conflist, saved)?;
    let status = node
        .cri
        .runtime
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    assert_eq!(network_ready(status), Some((true, String::new())));

    // a sandbox cannot run a container of an image it does not have
    let config = node.sandbox_config("missing-image");
    let sandbox = node.run_sandbox(&config).await?;
    let err = node
        .cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(
                "c",
                "docker.io/library/absent:1",
                &["true"],
            )),
            sandbox_config: Some(config),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    node.remove_sandbox(&sandbox).await?;
    Ok(())
}

/// ExecSync's stdout, failing on a non-zero exit.
async fn exec_out(node: &mut Node, container: &str, cmd: &[&str]) -> Result<String> {
    let reply = node
        .cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        reply.exit_code == 0,
        "{cmd:?} exited {}: {}",
        reply.exit_code,
        String::from_utf8_lossy(&reply.stderr)
    );
    Ok(String::from_utf8(reply.stdout)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_plumbing_stats_resources_log_reopen_and_image_removal() -> Result<()> {
    let mut node = node().await?;
    let image = node.pull(BUSYBOX).await?;
    let mut config = node.sandbox_config("plumbing");
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: 18080,
        host_ip: String::new(),
    }];
    let sandbox = node.run_sandbox(&config).await?;
    let script = "mkdir -p /www && echo via-hostport > /www/index.html && httpd -p 8080 -h /www; \
                  while true; do echo tick; sleep 0.1; done";
    let id = start(
        &mut node,
        &sandbox,
        &config,
        container_config("ticker", &image, &["sh", "-c", script]),
    )
    .await?;

    // containers and exec'd commands start with SIGPIPE at its default (a
    // Rust parent ignores it), and the pod's hostname, resolv.conf and host port
    let sigpipe_ignored = |status: &str| {
        let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .map(|m| m & (1 << 12) != 0)
    };
    let exec_status = exec_out(&mut node, &id, &["cat", "/proc/self/status"]).await?;
    assert_eq!(sigpipe_ignored(&exec_status), Some(false), "{exec_status}");
    let sleeper = start(
        &mut node,
        &sandbox,
        &config,
        container_config("sleeper", &image, &["sleep", "3600"]),
    )
    .await?;
    let init_status = exec_out(&mut node, &sleeper, &["cat", "/proc/1/status"]).await?;
    assert_eq!(sigpipe_ignored(&init_status), Some(false), "{init_status}");
    assert_eq!(exec_out(&mut node, &id, &["hostname"]).await?, "plumbing\n");
    let resolv = exec_out(&mut node, &id, &["cat", "/etc/resolv.conf"]).await?;
    assert_eq!(
        resolv,
        "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let ns = &node.ns;
    let page = paddock_testkit::wait::until(
        "the host port",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            Ok(ns
                .run(
                    "curl",
                    &["-sf", "--max-time", "2", "http://10.88.0.1:18080/"],
                )
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned()))
        },
    )?;
    assert_eq!(page, "via-hostport\n");

    // stats
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = node
        .cri
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await?
        .into_inner()
        .stats
        .context("stats")?;
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value);
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value);
    assert!(
        cpu > Some(0) && memory > Some(0),
        "cpu {cpu:?} memory {memory:?}"
    );
    let pod = node
        .cri
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await?
        .into_inner()
        .stats
        .and_then(|s| s.linux)
        .context("pod stats")?;
    assert_eq!(pod.containers.len(), 2);

    // a new memory limit lands in the container's cgroup
    node.cri
        .runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 100 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let cgroup = format!("{}/pod-plumbing/{id}", node.cgroup_root());
    let v1 = format!("/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes");
    let v2 = format!("/sys/fs/cgroup{cgroup}/memory.max");
    let limit = std::fs::read_to_string(&v1).or_else(|_| std::fs::read_to_string(&v2))?;
    assert_eq!(limit.trim(), (100u64 << 20).to_string());
    let status = node.status(&id).await?;
    let reported = status
        .resources
        .and_then(|r| r.linux)
        .map(|l| l.memory_limit_in_bytes);
    assert_eq!(reported, Some(100 << 20));

    // log rotation: the runtime writes to a new file after ReopenContainerLog
    let log = Path::new(&config.log_directory).join("ticker/0.log");
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated)?;
    node.cri
        .runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await?;
    paddock_testkit::wait::until(
        "ticks in the reopened log",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            Ok(std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(" stdout F tick")
                .then_some(()))
        },
    )?;

    // image usage, and removal once no container needs it
    let fs = node
        .cri
        .images
        .image_fs_info(ImageFsInfoRequest {})
        .await?
        .into_inner();
    let used = fs
        .image_filesystems
        .first()
        .and_then(|f| f.used_bytes)
        .map(|v| v.value);
    assert!(used > Some(1 << 20), "{used:?}");
    node.remove_sandbox(&sandbox).await?;
    node.cri
        .images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
        })
        .await?;
    let images = node
        .cri
        .images
        .list_images(ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    assert!(images.is_empty(), "{images:?}");
    let layers = std::fs::read_dir(node.dir().join("root/images/layers"))?.count();
    assert_eq!(layers, 0);
    Ok(())
}

fn pull_request(image: &str, auth: Option<AuthConfig>) -> PullImageRequest {
    PullImageRequest {
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        auth,
        sandbox_config: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_fetch_once_and_registries_yaml_or_cri_credentials_authenticate()
-> Result<()> {
    let mut node = node().await?;
    let pulls = (0..4).map(|_| {
        let mut images = node.cri.images.clone();
        async move {
            images
                .pull_image(pull_request("nginx", None))
                .await
                .map(|r| r.into_inner().image_ref)
        }
    });
    let refs = futures::future::try_join_all(pulls).await?;
    assert!(refs.windows(2).all(|w| w[0] == w[1]), "{refs:?}");
    let blob_gets = node
        .registry()
        .log()
        .lines()
        .filter(|l| l.contains("GET /v2/library/nginx/blobs/sha256:"))
        .count();
    assert_eq!(
        blob_gets,
        2,
        "one config and one layer fetch:\n{}",
        node.registry().log()
    );

    // An image index resolves to this platform's image (busybox, not the
    // arm64 entry's pause), recorded under the index's digest.
    let plain = node.pull(BUSYBOX).await?;
    let multi = node.pull(BUSYBOX_MULTI).await?;
    assert_eq!(plain, multi);
    let status = node
        .cri
        .images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: BUSYBOX_MULTI.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?
        .into_inner()
        .image
        .context("busybox:multi is listed")?;
    assert!(
        status.repo_tags.contains(&BUSYBOX_MULTI.to_string()),
        "{status:?}"
    );
    assert_eq!(
        status.repo_digests.len(),
        2,
        "the image's and the index's: {status:?}"
    );

    // A registry that wants basic auth, mirroring quay.io and reached
    // directly over plain HTTP too.
    let secured = paddock_testkit::registry::Registry::start_with_basic_auth(
        &node.ns,
        "127.0.0.1:5001",
        "paddock",
        "s3cret",
    )?;
    let mirrors = "mirrors:\n  quay.io:\n    endpoint: [\"http://127.0.0.1:5001\"]\n  \"127.0.0.1:5001\":\n    endpoint: [\"http://127.0.0.1:5001\"]\n";
    std::fs::write(
        node.registries_yaml(),
        format!(
            "{mirrors}configs:\n  \"127.0.0.1:5001\":\n    auth:\n      username: paddock\n      password: s3cret\n"
        ),
    )?;
    node.kill_runtime()?;
    node.start_runtime().await?;
    node.pull("quay.io/library/busybox:latest").await?;

    std::fs::write(node.registries_yaml(), mirrors)?;
    node.kill_runtime()?;
    node.start_runtime().await?;
    let refused = node
        .cri
        .images
        .pull_image(pull_request("quay.io/library/busybox:zstd", None))
        .await;
    assert!(refused.is_err(), "pulled without credentials");
    let with_cri_auth = AuthConfig {
        username: "paddock".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    node.cri
        .images
        .pull_image(pull_request(
            "127.0.0.1:5001/library/busybox:zstd",
            Some(with_cri_auth),
        ))
        .await?;
    assert!(secured.log().contains("paddock"), "{}", secured.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_shares_the_nodes_network_and_hostname() -> Result<()> {
    let mut node = node().await?;
    let image = node.pull(BUSYBOX).await?;
    let mut config = node.sandbox_config("hostnet");
    config.hostname = String::new();
    if let Some(linux) = config.linux.as_mut() {
        linux.security_context = Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let sandbox = node.run_sandbox(&config).await?;
    let id = start(
        &mut node,
        &sandbox,
        &config,
        container_config("c", &image, &["sleep", "3600"]),
    )
    .await?;
    // the registry listens on the node's loopback only
    let v2 = exec_out(
        &mut node,
        &id,
        &["wget", "-q", "-O", "-", "http://127.0.0.1:5000/v2/"],
    )
    .await?;
    assert_eq!(v2.trim(), "{}");
    let hostname = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    assert_eq!(
        exec_out(&mut node, &id, &["hostname"]).await?.trim(),
        hostname
    );
    let used = node.resources()?;
    assert_eq!(
        (used.veths, used.ipam),
        (0, 0),
        "no CNI for host-network pods"
    );
    node.remove_sandbox(&sandbox).await?;
    assert_eq!(
        node.resources()?,
        Resources {
            mounts: 0,
            veths: 0,
            cgroups: 0,
            ipam: 0
        }
    );
    Ok(())
}

/// What a missing executable does on one engine: CreateContainer's and
/// StartContainer's outcomes, then the container's state, exit code,
/// reason, whether the message names the executable and whether
/// finishedAt is set.
async fn missing_executable(engine: Engine) -> Result<(bool, bool, i32, i32, String, bool, bool)> {
    let mut node = Node::start(engine).await?;
    let image = node.pull(BUSYBOX).await?;
    let config = node.sandbox_config("missing");
    let sandbox = node.run_sandbox(&config).await?;
    let created = node
        .cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config("missing", &image, &["/no/such/binary"])),
            sandbox_config: Some(config.clone()),
        })
        .await;
    let Ok(created) = created else {
        return Ok((false, false, 0, 0, String::new(), false, false));
    };
    let id = created.into_inner().container_id;
    let started = node
        .cri
        .runtime
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    let status = node.status(&id).await?;
    node.remove_sandbox(&sandbox).await?;
    Ok((
        true,
        started.is_ok(),
        status.state,
        status.exit_code,
        status.reason,
        status.message.contains("/no/such/binary"),
        status.finished_at > 0,
    ))
}

/// A container whose executable does not exist is created, fails to start,
/// and then reads EXITED, 128, StartError with the error as its message —
/// as containerd 1.6 + runc report it, side by side.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_executable_fails_at_start_as_on_containerd() -> Result<()> {
    let ours = missing_executable(Engine::Paddock(env!("CARGO_BIN_EXE_paddock").into())).await?;
    let containerd = missing_executable(Engine::Containerd).await?;
    let expected = (
        true,
        false,
        ContainerState::ContainerExited as i32,
        128,
        "StartError".to_string(),
        true,
        true,
    );
    assert_eq!(containerd, expected, "containerd");
    assert_eq!(ours, expected, "Paddock's runtime");
    Ok(())
}
