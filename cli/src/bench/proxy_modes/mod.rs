//! `paddock bench proxy --modes iptables,ipvs`: the proxy modes side by
//! side, each at each size on a fresh User-Mode Linux VM of the same kind
//! (this machine's kernel has no IPVS). The VM runs this binary as the
//! proxy's backend on a synthetic model ([`node`]); the host then times new
//! connections to the service matched last and runs `wrk` through its node
//! port ([`traffic`]), and writes a Markdown table and a PNG plot
//! ([`report`]).

pub(super) mod node;
mod report;
mod traffic;

pub use node::NodeArgs;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use paddock_proxy::Mode;
use paddock_testkit::uml::{Lab, LabSpec};
use report::{Row, Setup, mode_name};
use traffic::Backends;

#[derive(clap::Args)]
pub struct ModesArgs {
    /// With --modes: the service counts compared.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000,10000")]
    services: Vec<usize>,
    /// With --modes: new TCP connections timed per size and mode.
    #[arg(long, default_value_t = 1000)]
    connects: usize,
    /// With --modes: how long wrk runs per size and mode.
    #[arg(long, default_value_t = 10)]
    wrk_seconds: u64,
    /// With --modes: the memory of each VM.
    #[arg(long, default_value_t = 1024)]
    vm_memory_mib: u32,
    /// With --modes: where the Markdown table goes (also printed); the PNG
    /// plot goes beside it.
    #[arg(long, default_value = "target/bench/proxy-modes.md")]
    modes_out: PathBuf,
}

/// How long one mode may take at one size inside its VM.
const NODE_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn run(modes: &[Mode], endpoints: usize, changes: usize, args: &ModesArgs) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the proxy modes benchmark runs as root (it boots VMs in a network namespace)"
    );
    let png = args.modes_out.with_extension("png");
    if let Some(dir) = args.modes_out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let setup = Setup {
        endpoints,
        changes,
        connects: args.connects,
        wrk_seconds: args.wrk_seconds,
        vm_memory_mib: args.vm_memory_mib,
    };
    let mut progress = Progress::new(args.services.len() * modes.len());
    let mut rows = Vec::new();
    for (size, &services) in args.services.iter().enumerate() {
        // Alternate which mode goes first, so that drift in the machine's
        // load does not favour one.
        let mut order = modes.to_vec();
        if size % 2 == 1 {
            order.reverse();
        }
        for mode in order {
            progress.next(&format!("{} at {services} services", mode_name(mode)));
            let row = measure(mode, services, endpoints, changes, args, &mut progress)
                .with_context(|| format!("{} at {services} services", mode_name(mode)))?;
            rows.push(row);
            // What is done so far survives a later failure.
            std::fs::write(&args.modes_out, report::markdown(&rows, &setup))?;
        }
    }
    progress.finish();
    let text = report::markdown(&rows, &setup);
    std::fs::write(&args.modes_out, &text)
        .with_context(|| format!("writing {}", args.modes_out.display()))?;
    report::plot(&rows, &png)?;
    print!("{text}");
    eprintln!("wrote {} and {}", args.modes_out.display(), png.display());
    Ok(())
}

fn measure(
    mode: Mode,
    services: usize,
    endpoints: usize,
    changes: usize,
    args: &ModesArgs,
    progress: &mut Progress,
) -> Result<Row> {
    progress.detail("booting the VM");
    let lab = Lab::boot(LabSpec {
        nodes: 1,
        memory_mib: args.vm_memory_mib,
    })?;
    let backends = Backends::start(lab.net())?;
    // The client reaches cluster IPs through the node.
    lab.net().ip(&[
        "route",
        "add",
        "10.96.0.0/12",
        "via",
        &node::NODE_IP.to_string(),
    ])?;

    let vm = lab.node(0);
    let exe = std::env::current_exe()?;
    let backend_list: Vec<String> = backends.addresses().iter().map(|a| a.to_string()).collect();
    let driver = vm.spawn(&format!(
        "NO_COLOR=1 exec {} bench proxy-node --mode {} --services {services} --endpoints {endpoints} \
         --changes {changes} --backends {}",
        exe.display(),
        mode_name(mode),
        backend_list.join(",")
    ))?;
    let started = Instant::now();
    let out = loop {
        if let Some(out) = driver.try_output()? {
            break out;
        }
        if started.elapsed() > NODE_TIMEOUT {
            bail!("the proxy in the VM took over {NODE_TIMEOUT:?}");
        }
        let stdout = driver.stdout();
        if let Some(line) = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("progress "))
        {
            progress.detail(line);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    ensure!(
        out.success(),
        "the proxy in the VM exited with {}: {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let result: serde_json::Value = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .context("the proxy in the VM printed no result")
        .and_then(|json| Ok(serde_json::from_str(json)?))?;
    let number = |key: &str| {
        result[key]
            .as_f64()
            .with_context(|| format!("no {key} in {result}"))
    };

    let cluster_ip = SocketAddr::from((node::cluster_ip(services - 1), 80));
    let node_port = SocketAddr::from((node::NODE_IP, node::NODE_PORT));
    for addr in [cluster_ip, node_port] {
        let body = traffic::get(lab.net(), addr)?;
        ensure!(body.trim() == "ok", "{addr} answered {body:?}");
    }
    let connects = traffic::connect_times(lab.net(), cluster_ip, args.connects, |done| {
        progress.detail(&format!("first packet: {done}/{} connects", args.connects))
    })?;
    progress.detail(&format!(
        "wrk through the node port, {} s",
        args.wrk_seconds
    ));
    let wrk = traffic::wrk(lab.net(), node_port, args.wrk_seconds)?;
    drop(backends);

    Ok(Row {
        mode,
        services,
        full_sync_ms: number("full_sync_ms")?,
        change_ms: result["change_ms"]
            .as_array()
            .context("no change_ms")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect(),
        cpu_seconds: number("cpu_seconds")?,
        peak_rss_kib: number("peak_rss_kib")? as u64,
        connects,
        requests_per_second: wrk.requests_per_second,
        wrk_errors: wrk.errors,
    })
}

/// One line on stderr saying which run is going and what it does; on a
/// terminal it is rewritten in place, elsewhere each run gets a line.
struct Progress {
    total: usize,
    step: usize,
    run: String,
    started: Instant,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            step: 0,
            run: String::new(),
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn next(&mut self, run: &str) {
        self.step += 1;
        self.run = run.to_string();
        if !self.terminal {
            eprintln!("[{}/{}] {run}", self.step, self.total);
        }
    }

    fn detail(&mut self, what: &str) {
        if self.terminal {
            eprint!(
                "\r\x1b[K[{}/{} {:>4}s] {}: {what}",
                self.step,
                self.total,
                self.started.elapsed().as_secs(),
                self.run
            );
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
