//! The runtime itself: sandboxes and containers kept in memory and on disk
//! under the root directory, and every operation CRI asks of them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use k8s_cri::v1::{
    ContainerConfig, ContainerState, LinuxContainerResources, PodSandboxConfig, Protocol,
};
use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt, create_cgroup_manager};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::container::{Container, spec};
use crate::error::{Error, Result};
use crate::image::{Image, ImageStore, Registries};
use crate::monitor::{self, Report};
use crate::process::ProcessId;
use crate::sandbox::cni::{self, Attachment, Cni};
use crate::sandbox::{self, Network, Sandbox, SandboxState, namespaces};
use crate::stream::{self, ExecSession, PortForwardSession, Streams};
use crate::{cgroups, exec, helper, snapshot, state};

/// How the runtime is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where state lives (`/var/lib/paddock/runtime`).
    pub root: PathBuf,
    /// k3s-style registries.yaml; a missing file means no mirrors.
    pub registries: Option<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The cgroup under which pods without a CRI cgroup parent get theirs.
    pub cgroup_root: String,
    /// The binary to run helpers (container monitors, exec) from; the
    /// current executable by default. It must call
    /// [`crate::run_helper_if_requested`] first thing in `main`.
    pub helper_binary: Option<PathBuf>,
    /// Where the Exec/PortForward streaming server listens (port 0: any).
    pub stream_address: std::net::SocketAddr,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from("/var/lib/paddock/runtime"),
            registries: Some(PathBuf::from("/etc/paddock/registries.yaml")),
            cni_conf_dir: PathBuf::from("/etc/paddock/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            cgroup_root: "/paddock".to_string(),
            helper_binary: None,
            stream_address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// libcontainer's start() chdirs to reach the notify socket: one at a time.
static START_LOCK: Mutex<()> = Mutex::new(());

/// The grace a forced stop (sandbox stop, container removal) waits for the
/// monitor after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct Runtime {
    config: Config,
    exe: PathBuf,
    streams: Arc<Streams>,
    images: Arc<ImageStore>,
    cni: Cni,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    containers: Mutex<HashMap<String, Container>>,
    /// Serialises operations on one sandbox or container.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn internal(e: impl Into<anyhow::Error>) -> Error {
    Error::Internal(e.into())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(Error::Internal)
}

impl Runtime {
    /// Opens the runtime's state under `config.root`, picking up the
    /// sandboxes and containers a previous run left (running containers
    /// keep running; those that exited meanwhile report their exit).
    pub fn open(config: Config) -> anyhow::Result<Runtime> {
        for dir in ["sandboxes", "containers", "libcontainer"] {
            std::fs::create_dir_all(config.root.join(dir))
                .with_context(|| format!("creating {}", config.root.join(dir).display()))?;
        }
        let registries = Registries::load(config.registries.as_deref())?;
        let images = Arc::new(ImageStore::open(&config.root.join("images"), registries)?);
        let exe = match &config.helper_binary {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("locating the helper binary")?,
        };
        let runtime = Runtime {
            streams: Arc::new(Streams::bind(config.stream_address)?),
            cni: Cni {
                conf_dir: config.cni_conf_dir.clone(),
                bin_dirs: config.cni_bin_dirs.clone(),
            },
            exe,
            images,
            sandboxes: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            config,
        };
        runtime.load()?;
        Ok(runtime)
    }

    fn load(&self) -> anyhow::Result<()> {
        let root = &self.config.root;
        for entry in std::fs::read_dir(root.join("sandboxes"))? {
            let dir = entry?.path();
            match state::read_json::<Sandbox>(&dir.join("sandbox.json"))? {
                Some(sb) => {
                    self.sandboxes_lock().insert(sb.id.clone(), sb);
                }
                None => sandbox::destroy(&dir)?, // interrupted before it was recorded
            }
        }
        for entry in std::fs::read_dir(root.join("containers"))? {
            let dir = entry?.path();
            match state::read_json::<Container>(&dir.join("container.json"))? {
                Some(mut c) => {
                    if c.refresh(&dir) {
                        state::write_json(&dir.join("container.json"), &c)?;
                    }
                    self.containers_lock().insert(c.id.clone(), c);
                }
                None => {
                    snapshot::remove(&dir)?;
                    std::fs::remove_dir_all(&dir)?;
                }
            }
        }
        // A crash during CreateContainer can leave a created container
        // (and its monitor, waiting) that no record names: delete it.
        for entry in std::fs::read_dir(self.libcontainer_root())? {
            let dir = entry?.path();
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !self.containers_lock().contains_key(&id) {
                tracing::warn!(container = %id, "deleting a container left by an interrupted create");
                if let Ok(mut orphan) = libcontainer::container::Container::load(dir.clone()) {
                    let _ = orphan.delete(true);
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        tracing::info!(
            sandboxes = self.sandboxes_lock().len(),
            containers = self.containers_lock().len(),
            root = %root.display(),
            "runtime state loaded"
        );
        Ok(())
    }

    fn sandboxes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sandbox>> {
        self.sandboxes.lock().expect("sandboxes lock poisoned")
    }

    fn containers_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().expect("containers lock poisoned")
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .expect("locks poisoned")
            .entry(id.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    fn forget_lock(&self, id: &str) {
        self.locks.lock().expect("locks poisoned").remove(id);
    }

    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// Whether a CNI network list is configured (the node's network is ready).
    pub fn network_ready(&self) -> std::result::Result<(), String> {
        match self.cni.load() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!(
                "no network config found in {}",
                self.cni.conf_dir.display()
            )),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    // ---- sandboxes ----

    pub fn sandbox(&self, id: &str) -> Result<Sandbox> {
        self.sandboxes_lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("pod sandbox {id} not found")))
    }

    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.sandboxes_lock().values().cloned().collect()
    }

    fn save_sandbox(&self, sb: &Sandbox) -> Result<()> {
        let dir = sandbox::dir(&self.config.root, &sb.id);
        state::write_json(&dir.join("sandbox.json"), sb)?;
        self.sandboxes_lock().insert(sb.id.clone(), sb.clone());
        Ok(())
    }

    fn attachment<'a>(&self, sb: &'a Sandbox, netns: &'a Path) -> Attachment<'a> {
        let meta = sb.config.metadata.clone().unwrap_or_default();
        let port_mappings = sb
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let protocol = match Protocol::try_from(p.protocol) {
                    Ok(Protocol::Udp) => "udp",
                    Ok(Protocol::Sctp) => "sctp",
                    _ => "tcp",
                };
                json!({"hostPort": p.host_port, "containerPort": p.container_port,
                       "protocol": protocol, "hostIP": p.host_ip})
            })
            .collect();
        Attachment {
            container_id: &sb.id,
            netns,
            args: vec![
                ("K8S_POD_NAMESPACE", meta.namespace),
                ("K8S_POD_NAME", meta.name),
                ("K8S_POD_INFRA_CONTAINER_ID", sb.id.clone()),
                ("K8S_POD_UID", meta.uid),
            ],
            port_mappings,
        }
    }

    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("sandbox config has no metadata"))?;
        if meta.name.is_empty() || meta.namespace.is_empty() {
            return Err(Error::invalid(
                "sandbox metadata needs a name and a namespace",
            ));
        }
        let id = state::new_id();
        let _guard = self.lock(&id).await;
        let cgroup_parent = match config.linux.as_ref().map(|l| l.cgroup_parent.as_str()) {
            Some(parent) if !parent.is_empty() => {
                if !parent.starts_with('/') {
                    return Err(Error::invalid(format!(
                        "cgroup parent {parent:?} is not absolute (systemd slices are not supported)"
                    )));
                }
                parent.to_string()
            }
            _ => format!("{}/{id}", self.config.cgroup_root.trim_end_matches('/')),
        };
        let mut sb = Sandbox {
            id: id.clone(),
            owns_cgroup_parent: !cgroups::exists(&cgroup_parent)?,
            cgroup_parent,
            config,
            runtime_handler,
            created_at: state::now_nanos(),
            state: SandboxState::Ready,
            network: None,
            ips: Vec::new(),
        };
        let dir = sandbox::dir(&self.config.root, &id);
        std::fs::create_dir_all(&dir)?;
        self.save_sandbox(&sb)?;
        let result = self.set_up_sandbox(&mut sb, &dir).await;
        if let Err(e) = result {
            tracing::warn!(sandbox = %id, "RunPodSandbox failed, cleaning up: {e}");
            if let Err(cleanup) = self.tear_down_sandbox(&mut sb).await {
                tracing::warn!(sandbox = %id, "cleanup failed: {cleanup}");
            }
            let _ = self.destroy_sandbox(&sb).await;
            return Err(e);
        }
        tracing::info!(sandbox = %id, ips = ?sb.ips, "pod sandbox ready");
        Ok(id)
    }

    async fn set_up_sandbox(&self, sb: &mut Sandbox, dir: &Path) -> Result<()> {
        let (d, s) = (dir.to_path_buf(), sb.clone());
        blocking(move || sandbox::create(&d, &s)).await?;
        if sb.host_network() {
            return Ok(());
        }
        let list = self.cni.load()?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "cni config uninitialized: no network config in {}",
                self.cni.conf_dir.display()
            ))
        })?;
        sb.network = Some(Network {
            list: list.clone(),
            result: serde_json::Value::Null,
        });
        self.save_sandbox(sb)?;
        let netns = namespaces::path(dir, namespaces::Kind::Net);
        let result = self.cni.add(&list, &self.attachment(sb, &netns)).await?;
        sb.ips = cni::pod_ips(&result);
        sb.network = Some(Network { list, result });
        self.save_sandbox(sb)
    }

    /// CNI DEL and the namespaces; the sandbox is NotReady afterwards.
    async fn tear_down_sandbox(&self, sb: &mut Sandbox) -> Result<()> {
        let dir = sandbox::dir(&self.config.root, &sb.id);
        if let Some(network) = &sb.network {
            let netns = namespaces::path(&dir, namespaces::Kind::Net);
            let result = (!network.result.is_null()).then_some(&network.result);
            self.cni
                .del(&network.list, result, &self.attachment(sb, &netns))
                .await?;
        }
        sb.network = None;
        let d = dir.clone();
        blocking(move || namespaces::remove(&d)).await?;
        sb.state = SandboxState::NotReady;
        if dir.exists() {
            self.save_sandbox(sb)?;
        }
        Ok(())
    }

    async fn destroy_sandbox(&self, sb: &Sandbox) -> Result<()> {
        let dir = sandbox::dir(&self.config.root, &sb.id);
        blocking(move || sandbox::destroy(&dir)).await?;
        if sb.owns_cgroup_parent {
            cgroups::remove(&sb.cgroup_parent)?;
        }
        self.sandboxes_lock().remove(&sb.id);
        Ok(())
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<String> {
        self.containers_lock()
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id.clone())
            .collect()
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        for container in self.containers_of(id) {
            self.stop_container(&container, 0).await?;
        }
        let _guard = self.lock(id).await;
        let mut sb = self.sandbox(id)?;
        self.tear_down_sandbox(&mut sb).await?;
        tracing::info!(sandbox = %id, "pod sandbox stopped");
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        if self.sandboxes_lock().get(id).is_none() {
            return Ok(()); // already removed: not an error, as CRI says
        }
        for container in self.containers_of(id) {
            self.remove_container(&container).await?;
        }
        let guard = self.lock(id).await;
        let mut sb = self.sandbox(id)?;
        if sb.state == SandboxState::Ready || sb.network.is_some() {
            self.tear_down_sandbox(&mut sb).await?;
        }
        self.destroy_sandbox(&sb).await?;
        drop(guard);
        self.forget_lock(id);
        tracing::info!(sandbox = %id, "pod sandbox removed");
        Ok(())
    }

    // ---- containers ----

    /// The container `id`, with its exit picked up if it has exited.
    pub fn container(&self, id: &str) -> Result<Container> {
        let mut containers = self.containers_lock();
        let c = containers
            .get_mut(id)
            .ok_or_else(|| Error::not_found(format!("container {id} not found")))?;
        let dir = Container::dir(&self.config.root, id);
        if c.refresh(&dir) {
            state::write_json(&dir.join("container.json"), &*c)?;
        }
        Ok(c.clone())
    }

    pub fn containers(&self) -> Vec<Container> {
        let ids: Vec<String> = self.containers_lock().keys().cloned().collect();
        ids.iter()
            .filter_map(|id| self.container(id).ok())
            .collect()
    }

    fn save_container(&self, c: &Container) -> Result<()> {
        let dir = Container::dir(&self.config.root, &c.id);
        state::write_json(&dir.join("container.json"), c)?;
        self.containers_lock().insert(c.id.clone(), c.clone());
        Ok(())
    }

    fn libcontainer_root(&self) -> PathBuf {
        self.config.root.join("libcontainer")
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<String> {
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("container config has no metadata"))?;
        if meta.name.is_empty() {
            return Err(Error::invalid("container metadata needs a name"));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::invalid("container config has no image"))?;
        let sb = self.sandbox(sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {sandbox_id} is not ready"
            )));
        }
        let image = self.images.resolve(&image_name).ok_or_else(|| {
            Error::not_found(format!("image {image_name:?} not found: pull it first"))
        })?;
        let id = state::new_id();
        let _guard = self.lock(&id).await;
        let dir = Container::dir(&self.config.root, &id);
        std::fs::create_dir_all(&dir)?;
        match self
            .set_up_container(&id, &dir, &sb, &image, &image_name, config)
            .await
        {
            Ok(c) => {
                tracing::info!(container = %id, sandbox = %sandbox_id, image = %image_name, "container created");
                self.save_container(&c)?;
                Ok(id)
            }
            Err(e) => {
                let d = dir.clone();
                let _ = blocking(move || {
                    snapshot::remove(&d)?;
                    std::fs::remove_dir_all(&d)?;
                    Ok(())
                })
                .await;
                Err(e)
            }
        }
    }

    async fn set_up_container(
        &self,
        id: &str,
        dir: &Path,
        sb: &Sandbox,
        image: &Image,
        image_name: &str,
        config: ContainerConfig,
    ) -> Result<Container> {
        let layers = self.images.layer_dirs(image);
        let d = dir.to_path_buf();
        let rootfs = blocking(move || snapshot::mount(&layers, &d)).await?;
        let sandbox_dir = sandbox::dir(&self.config.root, &sb.id);
        let oci = spec::build(&spec::Input {
            id,
            config: &config,
            sandbox: sb,
            sandbox_dir: &sandbox_dir,
            image: &image.config,
            rootfs: &rootfs,
        })?;
        oci.save(dir.join("config.json")).map_err(internal)?;
        let log_path = match (&sb.config.log_directory, &config.log_path) {
            (_, path) if path.is_empty() => None,
            (base, path) => Some(Path::new(base).join(path)),
        };
        let cgroup = spec::cgroup_path(sb, id);
        let request = monitor::Request {
            id: id.to_string(),
            state_root: self.libcontainer_root(),
            bundle: dir.to_path_buf(),
            log_path: log_path.clone(),
            exit_file: Container::exit_file(dir),
            cgroup: cgroup.clone(),
        };
        let (monitor, init_pid, start_error) = match self.spawn_monitor(request).await? {
            Spawned::Created { monitor, init_pid } => (Some(monitor), Some(init_pid), None),
            Spawned::Failed(error) => {
                tracing::warn!(container = %id, %error, "the container could not be created; StartContainer will fail");
                (None, None, Some(error))
            }
        };
        let stop_signal = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone())
            .unwrap_or_else(|| "SIGTERM".to_string());
        Ok(Container {
            id: id.to_string(),
            sandbox_id: sb.id.clone(),
            config,
            image_id: image.id.clone(),
            image_name: image_name.to_string(),
            created_at: state::now_nanos(),
            started_at: None,
            stop_signal,
            log_path,
            cgroup,
            monitor,
            init_pid,
            exit: None,
            start_error,
        })
    }

    /// Starts a container's monitor, which creates the container and reports.
    async fn spawn_monitor(&self, request: monitor::Request) -> Result<Spawned> {
        let mut child = helper::command(&self.exe, &helper::Request::Monitor(request))?
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("spawning the container monitor")?;
        let pid = child.id().context("the monitor has no pid")? as i32;
        let monitor = ProcessId::of(pid)?;
        let stdout = child.stdout.take().context("the monitor's stdout")?;
        // Reap the monitor whenever it exits, while this process lives.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await?;
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Created { init_pid }) => Ok(Spawned::Created { monitor, init_pid }),
            Ok(Report::Failed { error }) => Ok(Spawned::Failed(error)),
            Err(_) => Err(Error::Internal(anyhow!(
                "the container monitor died before reporting"
            ))),
        }
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let _guard = self.lock(id).await;
        let mut c = self.container(id)?;
        if c.state() != ContainerState::ContainerCreated {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not in the created state"
            )));
        }
        if let Some(error) = c.start_error.clone() {
            // containerd opens the log before it fails: it is there, empty.
            if let Some(log) = &c.log_path {
                if let Some(dir) = log.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .with_context(|| format!("creating {}", log.display()))?;
            }
            c.fail_start();
            self.save_container(&c)?;
            return Err(Error::Internal(anyhow!(
                "failed to start container {id}: {error}"
            )));
        }
        let root = self.libcontainer_root().join(id);
        blocking(move || {
            let _one_at_a_time = START_LOCK
                .lock()
                .map_err(|_| anyhow!("start lock poisoned"))?;
            libcontainer::container::Container::load(root)?.start()?;
            Ok(())
        })
        .await?;
        c.started_at = Some(state::now_nanos());
        self.save_container(&c)?;
        Ok(())
    }

    /// Sends the stop signal, then SIGKILL after `timeout` seconds.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let _guard = self.lock(id).await;
        let c = self.container(id)?;
        let (Some(monitor), Some(init)) = (c.monitor, c.init_pid) else {
            return Ok(());
        };
        if c.exit.is_some() || !monitor.is_alive() {
            self.container(id)?;
            return Ok(());
        }
        if timeout > 0 && c.started_at.is_some() {
            let signal: Signal = parse_signal(&c.stop_signal).unwrap_or(Signal::SIGTERM);
            let _ = nix::sys::signal::kill(Pid::from_raw(init), signal);
            let graceful =
                tokio::time::timeout(Duration::from_secs(timeout as u64), monitor.exited()).await;
            if matches!(graceful, Ok(Ok(()))) {
                self.container(id)?;
                return Ok(());
            }
        }
        let _ = nix::sys::signal::kill(Pid::from_raw(init), Signal::SIGKILL);
        tokio::time::timeout(KILL_WAIT, monitor.exited())
            .await
            .map_err(|_| Error::Internal(anyhow!("container {id} did not exit after SIGKILL")))??;
        self.container(id)?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let Ok(c) = self.container(id) else {
            return Ok(()); // already removed
        };
        if c.exit.is_none() {
            self.stop_container(id, 0).await?;
        }
        let guard = self.lock(id).await;
        let dir = Container::dir(&self.config.root, id);
        let state_dir = self.libcontainer_root().join(id);
        let log = c.log_path.clone();
        blocking(move || {
            if state_dir.exists() {
                if let Ok(mut lc) = libcontainer::container::Container::load(state_dir.clone()) {
                    let _ = lc.delete(true);
                }
                let _ = std::fs::remove_dir_all(&state_dir);
            }
            snapshot::remove(&dir)?;
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            if let Some(log) = log {
                let _ = std::fs::remove_file(log);
            }
            Ok(())
        })
        .await?;
        self.containers_lock().remove(id);
        drop(guard);
        self.forget_lock(id);
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    fn running(&self, id: &str) -> Result<Container> {
        let c = self.container(id)?;
        if c.state() != ContainerState::ContainerRunning {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(c)
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<exec::Output> {
        self.running(id)?;
        if cmd.is_empty() {
            return Err(Error::invalid("exec needs a command"));
        }
        let request = exec::Request {
            id: id.to_string(),
            state_root: self.libcontainer_root(),
            args: cmd,
            timeout_ms: timeout_secs.max(0) as u64 * 1000,
            status_file: Container::dir(&self.config.root, id)
                .join(format!("exec-{}.json", state::new_id())),
        };
        exec::exec_sync(&self.exe, request).await
    }

    /// Registers a streaming exec; returns the URL to connect to.
    pub fn exec(&self, request: k8s_cri::v1::ExecRequest) -> Result<String> {
        self.running(&request.container_id)?;
        if request.cmd.is_empty() {
            return Err(Error::invalid("exec needs a command"));
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(Error::invalid("exec needs one of stdin, stdout and stderr"));
        }
        if request.tty && request.stderr {
            return Err(Error::invalid("a tty has no separate stderr"));
        }
        let id = &request.container_id;
        Ok(self.streams.register_exec(ExecSession {
            request: exec::Request {
                id: id.clone(),
                state_root: self.libcontainer_root(),
                args: request.cmd,
                timeout_ms: 0,
                status_file: Container::dir(&self.config.root, id)
                    .join(format!("exec-{}.json", state::new_id())),
            },
            exe: self.exe.clone(),
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
        }))
    }

    /// Registers a port-forward into a ready sandbox; returns its URL.
    pub fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String> {
        let sb = self.sandbox(sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {sandbox_id} is not ready"
            )));
        }
        let netns = (!sb.host_network()).then(|| {
            namespaces::path(
                &sandbox::dir(&self.config.root, sandbox_id),
                namespaces::Kind::Net,
            )
        });
        Ok(self.streams.register_port_forward(PortForwardSession {
            netns,
            ports: stream::ports(ports)?,
        }))
    }

    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.running(id)?;
        if let Some(monitor) = c.monitor {
            nix::sys::signal::kill(Pid::from_raw(monitor.pid), Signal::SIGUSR1)
                .map_err(internal)?;
        }
        Ok(())
    }

    pub async fn update_resources(
        &self,
        id: &str,
        resources: LinuxContainerResources,
    ) -> Result<()> {
        let _guard = self.lock(id).await;
        let mut c = self.container(id)?;
        if c.exit.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has exited"
            )));
        }
        let oci = spec::resources(Some(&resources), false)?;
        let cgroup = c.cgroup.clone();
        blocking(move || {
            let manager = cgroup_manager(&cgroup)?;
            manager
                .apply(&ControllerOpt {
                    resources: &oci,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| anyhow!("applying resources: {e}"))
        })
        .await?;
        c.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(resources);
        self.save_container(&c)
    }

    /// CPU nanoseconds used, memory working set and usage bytes, and the
    /// writable layer's size of a running container.
    pub fn usage(&self, c: &Container) -> Option<Usage> {
        if c.state() != ContainerState::ContainerRunning {
            return None;
        }
        let manager = cgroup_manager(&c.cgroup).ok()?;
        let stats = manager.stats().ok()?;
        let inactive = ["total_inactive_file", "inactive_file"]
            .iter()
            .find_map(|k| stats.memory.stats.get(*k))
            .copied()
            .unwrap_or(0);
        let upper = Container::dir(&self.config.root, &c.id).join("upper");
        Some(Usage {
            cpu_nanos: stats.cpu.usage.usage_total,
            memory_usage: stats.memory.memory.usage,
            working_set: stats.memory.memory.usage.saturating_sub(inactive),
            writable_bytes: du(&upper),
        })
    }

    // ---- images ----

    pub async fn pull_image(&self, name: &str, auth: RegistryAuth) -> Result<String> {
        self.images.pull(name, auth).await
    }

    pub fn remove_image(&self, name: &str) -> Result<()> {
        let in_use: HashSet<String> = self
            .containers_lock()
            .values()
            .filter_map(|c| self.images.resolve(&c.image_id))
            .flat_map(|i| i.layers)
            .collect();
        self.images.remove(name, &in_use)
    }
}

/// Resource usage of a running container.
pub struct Usage {
    pub cpu_nanos: u64,
    pub memory_usage: u64,
    pub working_set: u64,
    pub writable_bytes: u64,
}

fn cgroup_manager(cgroup: &str) -> anyhow::Result<libcgroups::common::AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(cgroup),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .map_err(|e| anyhow!("cgroup {cgroup}: {e}"))
}

/// `SIGQUIT`, `QUIT` or `3`.
fn parse_signal(name: &str) -> Option<Signal> {
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

fn du(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// What a container's monitor reported once it tried to create the
/// container.
enum Spawned {
    Created {
        monitor: ProcessId,
        init_pid: i32,
    },
    /// The OCI container could not be made; the monitor is gone.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
