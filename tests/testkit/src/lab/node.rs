//! One machine of the lab: a network namespace on the lab's bridge, its own
//! directory (data dir, CNI config, runtime socket, pod logs, process logs)
//! and cgroup root, and the Paddock processes it runs — with containerd
//! beside them when it is the node's runtime.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::Runtime;
use crate::netns::NetNs;
use crate::process::Guard;

/// A Paddock process a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Daemon {
    Server,
    Agent,
    /// Debian's containerd, the node's CRI runtime when it is not Paddock's.
    Containerd,
}

impl Daemon {
    pub const ALL: [Daemon; 3] = [Daemon::Server, Daemon::Agent, Daemon::Containerd];

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Server => "server",
            Daemon::Agent => "agent",
            Daemon::Containerd => "containerd",
        }
    }
}

pub struct Node {
    /// The Node's name, as in the Vagrant lab: `m-k8s`, `w1-k8s`, ...
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: NetNs,
    dir: PathBuf,
    cgroup_root: String,
    pub runtime: Runtime,
    running: BTreeMap<Daemon, Guard>,
}

impl Node {
    /// The namespace `<lab id>-<name>` with `eth0` at `ip` on the client's
    /// bridge, and the node's directory under the lab's (with containerd's
    /// configuration when it is the node's runtime).
    pub(super) fn create(
        lab_id: &str,
        lab_dir: &Path,
        client: &NetNs,
        (name, ip): (&str, Ipv4Addr),
        runtime: Runtime,
    ) -> Result<Node> {
        let ns = NetNs::create(&format!("{lab_id}-{name}"))?;
        client.veth(name, &ns, "eth0")?;
        client.attach(name, super::BRIDGE)?;
        ns.addr_up("eth0", &format!("{ip}/{}", super::PREFIX))?;
        // The client's end of the LAN is the gateway, as a Vagrant host's
        // NAT would be; it forwards nothing. Packets a node sends to
        // ClusterIPs need a route before the proxy's rules rewrite them.
        ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &super::CLIENT_IP.to_string(),
        ])?;
        let dir = lab_dir.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let node = Node {
            name: name.to_string(),
            ip,
            ns,
            dir,
            cgroup_root: format!("/{lab_id}-{name}"),
            runtime,
            running: BTreeMap::new(),
        };
        if runtime == Runtime::Containerd {
            node.write_containerd_config()?;
        }
        Ok(node)
    }

    /// containerd's configuration as `make containerd-config` writes it,
    /// with the node's own paths and the lab's registry as the mirror.
    fn write_containerd_config(&self) -> Result<()> {
        crate::containerd::Config {
            dir: &self.dir.join("containerd"),
            socket: &self.containerd_socket(),
            cni_conf_dir: &self.cni_conf_dir(),
            mirror: &format!("http://{}", super::REGISTRY),
        }
        .write()?;
        Ok(())
    }

    fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// containerd inside the node, if it is the node's runtime and does not
    /// run yet.
    pub(super) fn start_runtime(&mut self) -> Result<()> {
        if self.runtime != Runtime::Containerd || self.runs(Daemon::Containerd) {
            return Ok(());
        }
        let config = self.dir.join("containerd/config.toml");
        self.spawn(
            Daemon::Containerd,
            Path::new("containerd"),
            &["--config".into(), config.into()],
        )
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `--data-dir` of the node's server and agent (`/var/lib/paddock`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The cgroup under which the node's pods get theirs.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// The flags that give the node's agent (or a server's embedded one)
    /// places of its own on this shared machine, and its runtime.
    pub(super) fn node_flags(&self, registries: &Path) -> Vec<OsString> {
        let runtime = match self.runtime {
            Runtime::Paddock => (
                "--runtime-socket",
                format!("unix://{}", self.dir.join("runtime.sock").display()),
            ),
            Runtime::Containerd => (
                "--container-runtime-endpoint",
                format!("unix://{}", self.containerd_socket().display()),
            ),
        };
        let pairs: [(&str, OsString); 8] = [
            ("--node-name", self.name.clone().into()),
            ("--node-ip", self.ip.to_string().into()),
            ("--data-dir", self.data_dir().into()),
            ("--cni-conf-dir", self.cni_conf_dir().into()),
            ("--pod-log-dir", self.dir.join("pod-logs").into()),
            ("--cgroup-root", self.cgroup_root.clone().into()),
            ("--private-registry", registries.into()),
            (runtime.0, runtime.1.into()),
        ];
        pairs
            .into_iter()
            .flat_map(|(flag, value)| [flag.into(), value])
            .collect()
    }

    /// Starts `program <args>` (paddock, containerd) inside the node as
    /// `daemon`, logging to `<dir>/<daemon>.log`.
    pub(super) fn spawn(
        &mut self,
        daemon: Daemon,
        program: &Path,
        args: &[OsString],
    ) -> Result<()> {
        if self.running.contains_key(&daemon) {
            bail!("{} already runs a {}", self.name, daemon.name());
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path(daemon))?;
        let mut cmd = self.ns.command(&program.display().to_string());
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let guard = Guard::spawn(&format!("{} on {}", daemon.name(), self.name), cmd)?;
        self.running.insert(daemon, guard);
        Ok(())
    }

    /// Fails if a daemon the node started has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for (daemon, guard) in &mut self.running {
            if !guard.is_running() {
                bail!(
                    "{} on {} exited:\n{}",
                    daemon.name(),
                    self.name,
                    tail(&self.dir.join(format!("{}.log", daemon.name())), 40)
                );
            }
        }
        Ok(())
    }

    /// `kill -9` of every process the node started (Paddock's, containerd),
    /// as when the machine is cut off; its containers stay where they are.
    pub fn kill(&mut self) -> Result<()> {
        for (_, guard) in std::mem::take(&mut self.running) {
            guard.kill9()?;
        }
        Ok(())
    }

    /// SIGTERM to every process the node started, and wait for them.
    pub fn stop(&mut self) -> Result<()> {
        for (_, guard) in std::mem::take(&mut self.running) {
            guard.stop(Duration::from_secs(15))?;
        }
        Ok(())
    }

    pub fn runs(&self, daemon: Daemon) -> bool {
        self.running.contains_key(&daemon)
    }

    fn log_path(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(format!("{}.log", daemon.name()))
    }

    /// The whole log of one daemon.
    pub fn log(&self, daemon: Daemon) -> String {
        std::fs::read_to_string(self.log_path(daemon)).unwrap_or_default()
    }

    /// The last lines of every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        Daemon::ALL
            .into_iter()
            .filter(|d| self.log_path(*d).exists())
            .map(|d| {
                format!(
                    "--- {} {} (last lines) ---\n{}\n",
                    self.name,
                    d.name(),
                    tail(&self.log_path(d), 30)
                )
            })
            .collect()
    }

    /// Runs `program args` inside the node; its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self.ns.run(program, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
