//! User-Mode Linux VMs, for what this machine's kernel lacks (IPVS, dummy
//! links). A [`Lab`] boots N nodes on one bridge inside a network namespace
//! the test owns; node `i` is `node-1i` at `192.168.56.1i/24` and the
//! namespace, at `192.168.56.1`, is a client on their L2 network. Each node
//! runs the host's own root (hostfs, read-only, under a tmpfs overlay), so
//! host-built binaries (`paddock`, iptables, ipvsadm, busybox, curl) run
//! inside unchanged, with Debian's UML kernel modules at `/lib/modules`.
//! Commands reach a node through a shared directory (see `uml/agent.sh`).
//! Dropping the lab kills the VMs and deletes the namespace and the files,
//! also when a test fails.

mod command;

pub use command::{Output, Spawned};

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

use crate::netns::{self, NetNs};
use crate::process::Guard;
use crate::{unique_name, wait};

/// Debian's `user-mode-linux` kernel.
const UML_KERNEL: &str = "/usr/bin/linux.uml";
const INIT: &str = include_str!("uml/init.sh");
const AGENT: &str = include_str!("uml/agent.sh");
const XSTATE_SHIM: &str = include_str!("uml/xstate_shim.c");
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const BRIDGE: &str = "br0";

/// What to boot.
#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    pub nodes: usize,
    /// Memory of each node.
    pub memory_mib: u32,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            nodes: 1,
            memory_mib: 256,
        }
    }
}

/// VMs on one bridge inside a network namespace of their own.
pub struct Lab {
    // Fields drop in this order: the VMs, then their network, then files.
    nodes: Vec<Vm>,
    net: NetNs,
    dir: LabDir,
}

impl Lab {
    /// Boots `spec.nodes` nodes and waits until each accepts commands.
    pub fn boot(spec: LabSpec) -> Result<Lab> {
        if !Path::new(UML_KERNEL).exists() {
            bail!(
                "User-Mode Linux is not installed ({UML_KERNEL} is missing): the IPVS tests run \
                 in UML VMs; `make test-deps` (scripts/deps.sh test) installs user-mode-linux"
            );
        }
        if spec.nodes == 0 || spec.nodes > 89 {
            bail!("a lab has 1 to 89 nodes, not {}", spec.nodes);
        }
        let dir = LabDir::create()?;
        let init = dir.0.join("init.sh");
        fs::write(&init, INIT)?;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
        fs::write(dir.0.join("agent.sh"), AGENT)?;
        let shim = build_xstate_shim(&dir.0)?;

        let net = NetNs::create(&unique_name("pdkvm"))?;
        net.bridge(BRIDGE, "192.168.56.1/24")?;

        let mut nodes = Vec::with_capacity(spec.nodes);
        for index in 0..spec.nodes {
            nodes.push(Vm::start(&dir.0, &net, &shim, index, spec.memory_mib)?);
        }
        let lab = Lab { nodes, net, dir };
        for vm in &lab.nodes {
            vm.wait_ready()?;
        }
        Ok(lab)
    }

    /// The namespace holding the bridge: a client on the nodes' network.
    pub fn net(&self) -> &NetNs {
        &self.net
    }

    /// The client's address on the nodes' network.
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 56, 1)
    }

    pub fn node(&self, index: usize) -> &Vm {
        &self.nodes[index]
    }

    pub fn nodes(&self) -> &[Vm] {
        &self.nodes
    }

    /// The host directory of this lab (consoles, command channels).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// The body of an HTTP GET of `url` from the client's namespace.
    pub fn client_get(&self, url: &str) -> Result<String> {
        let out = self
            .net
            .run("curl", &["-sS", "--max-time", "5", url])
            .with_context(|| format!("GET {url} from the client"))?;
        String::from_utf8(out.stdout).context("the answer is not UTF-8")
    }

    /// A TCP connection from the client's namespace to `addr`, usable from
    /// any thread (a socket stays in the namespace it was made in).
    pub fn client_connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        let netns = File::open(self.net.path()).context("opening the client's namespace")?;
        std::thread::spawn(move || -> Result<TcpStream> {
            setns(&netns, CloneFlags::CLONE_NEWNET).context("entering the client's namespace")?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connecting to {addr} from the client"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
    }

    /// `count` GETs of `url` from the client, counted by their trimmed
    /// answer; each is a new connection.
    pub fn client_tally(&self, url: &str, count: usize) -> Result<BTreeMap<String, usize>> {
        let mut answers = BTreeMap::new();
        for _ in 0..count {
            let answer = self.client_get(url)?;
            *answers.entry(answer.trim().to_string()).or_default() += 1;
        }
        Ok(answers)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for vm in &self.nodes {
                eprintln!(
                    "--- console of {} (last lines) ---\n{}",
                    vm.name,
                    vm.console_tail(40)
                );
            }
        }
    }
}

/// One UML node.
pub struct Vm {
    name: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    uml: Mutex<Option<Guard>>,
    next_command: AtomicU64,
}

impl Vm {
    fn start(lab: &Path, net: &NetNs, shim: &Path, index: usize, memory_mib: u32) -> Result<Vm> {
        let host = 10 + u8::try_from(index).context("node index")?;
        let name = format!("node-{host}");
        let ip = Ipv4Addr::new(192, 168, 56, host);
        let dir = lab.join(&name);
        let channel = dir.join("channel");
        fs::create_dir_all(&channel)?;

        let tap = format!("tap{host}");
        net.ip(&["tuntap", "add", &tap, "mode", "tap"])?;
        net.attach(&tap, BRIDGE)?;

        let console = File::create(dir.join("console.log"))?;
        let mut cmd = net.command(UML_KERNEL);
        cmd.env("TMPDIR", "/dev/shm")
            .env("LD_PRELOAD", shim)
            .arg(format!("mem={memory_mib}M"))
            .args(["root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro"])
            .arg(format!("init={}", lab.join("init.sh").display()))
            .args(["con=null", "con0=null,fd:1", "quiet"])
            .arg(format!(
                "vec0:transport=tap,ifname={tap},mac=52:54:00:38:00:{host:02x}"
            ))
            .arg(format!("umid={name}"))
            .arg(format!("uml_dir={}", lab.join("uml").display()))
            .arg(format!("paddock_name={name}"))
            .arg(format!("paddock_addr={ip}/24"))
            .arg(format!("paddock_chan={}", channel.display()))
            .stdin(std::process::Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console);
        let uml = Guard::spawn(&name, cmd)?;
        Ok(Vm {
            name,
            ip,
            dir,
            uml: Mutex::new(Some(uml)),
            next_command: AtomicU64::new(0),
        })
    }

    fn wait_ready(&self) -> Result<()> {
        let ready = self.channel().join("ready");
        self.poll(&format!("{} to boot", self.name), BOOT_TIMEOUT, || {
            Ok(ready.exists().then_some(()))
        })
        .with_context(|| format!("console of {}:\n{}", self.name, self.console_tail(30)))
    }

    /// Polls `probe` until it yields, like [`wait::until`], but fails at once
    /// when the VM stops or the probe fails.
    fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        wait::until(what, timeout, Duration::from_millis(10), || {
            Ok(match probe() {
                Ok(Some(value)) => Some(Ok(value)),
                Ok(None) => self.ensure_running().err().map(Err),
                Err(e) => Some(Err(e)),
            })
        })?
    }

    /// `node-1i`, also its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    fn channel(&self) -> PathBuf {
        self.dir.join("channel")
    }

    /// Fails with the console's last lines once the VM has stopped.
    fn ensure_running(&self) -> Result<()> {
        let mut uml = self.uml.lock().unwrap_or_else(|e| e.into_inner());
        if uml.as_mut().is_some_and(Guard::is_running) {
            return Ok(());
        }
        bail!(
            "VM {} has stopped; console:\n{}",
            self.name,
            self.console_tail(30)
        )
    }

    /// An HTTP server (busybox httpd) on `port` of every address of the VM,
    /// answering each GET with `body`; ready to accept when this returns.
    pub fn serve_http(&self, port: u16, body: &str) -> Result<Spawned<'_>> {
        let root = format!("/run/http-{port}");
        self.run(&format!(
            "mkdir -p {root} && printf '%s\\n' '{body}' > {root}/index.html"
        ))?;
        let server = self.spawn(&format!("exec busybox httpd -f -p {port} -h {root}"))?;
        self.run(&format!(
            "for i in $(seq 200); do
                 ss -ltnH 'sport = :{port}' | grep -q . && exit 0
                 sleep 0.05
             done
             echo 'httpd did not listen on :{port}' >&2; exit 1"
        ))?;
        Ok(server)
    }

    /// The last `lines` lines of the console (kernel messages, init errors).
    pub fn console_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let uml = self.uml.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(guard) = uml.take() {
            // A VM has nothing to flush: kill it at once, with every host
            // process of the instance (they share its process group).
            let _ = guard.kill9();
        }
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct LabDir(PathBuf);

impl LabDir {
    fn create() -> Result<LabDir> {
        let path = std::env::temp_dir().join(unique_name("paddock-uml-"));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(LabDir(path))
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Compiles the ptrace shim UML needs on hosts with AMX (see the C source).
fn build_xstate_shim(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("xstate_shim.c");
    let shim = dir.join("xstate_shim.so");
    fs::write(&source, XSTATE_SHIM)?;
    netns::run(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&shim)
            .arg(&source)
            .arg("-ldl"),
    )
    .context("compiling the UML ptrace shim (needs a C compiler: build-essential)")?;
    Ok(shim)
}
