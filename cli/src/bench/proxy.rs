//! The proxy benchmark, side by side in one run, each measurement in a
//! fresh network namespace:
//! - full sync of N services × E endpoints by the iptables proxier (read the
//!   tables, render, one `iptables-restore`), against a bare
//!   `iptables-restore` of the very same input: the floor;
//! - a one-service change at the largest N (one endpoint replaced): what a
//!   partial sync costs when the table is big, against the least any change
//!   to that table costs (a rule added and deleted in one transaction);
//! - the memory of a process holding the model and the proxier's state at
//!   the largest N;
//! - `paddock proxy` itself at the largest N against a real `paddock
//!   server`: time to its first sync and its memory (see [`served`]).
//!
//! iptables-nft 1.8.9 (Debian 12) is quadratic in the chains one
//! transaction declares (10k services: over ten minutes of CPU for the
//! floor alone), so the nft full syncs stop at 1k services by default; the
//! nft one-change table is grown with partial syncs of 500 services.

mod served;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use paddock_proxy::iptables::jumps::jump_rules;
use paddock_proxy::iptables::plan::{self, Applied, KernelState};
use paddock_proxy::iptables::render::base_rules;
use paddock_proxy::iptables::{Flavor, Iptables, Proxier, RenderConfig};
use paddock_proxy::model::{Endpoint, Model, Protocol, Service, ServicePort, ServicePortName};
use paddock_testkit::netns::NetNs;
use paddock_testkit::service_lab::in_netns;
use paddock_testkit::unique_name;

#[derive(clap::Args)]
pub struct Args {
    /// Service counts for full syncs on iptables-legacy.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    legacy: Vec<usize>,
    /// Service counts for full syncs on iptables-nft.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    nft: Vec<usize>,
    /// Services for the one-service change (on both flavours).
    #[arg(long, default_value_t = 10000)]
    change_at: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Full syncs (and floors) per size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// One-service changes timed.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Where to write the Markdown report (also printed).
    #[arg(long, default_value = "target/bench/proxy.md")]
    out: PathBuf,
    /// Skip `paddock proxy` against a real server (filling the server takes
    /// a minute or two at 10k services).
    #[arg(long)]
    no_served: bool,
    /// Compare these proxy modes (iptables,ipvs) in User-Mode Linux VMs
    /// instead, with --endpoints, --changes and the options marked "With
    /// --modes".
    #[arg(long, value_delimiter = ',')]
    modes: Vec<paddock_proxy::Mode>,
    #[command(flatten)]
    vms: super::proxy_modes::ModesArgs,
    /// Internal: build N services, sync them in the current namespace and
    /// print this process's peak RSS in KiB.
    #[arg(long, hide = true)]
    rss_probe: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the proxy benchmark runs as root (it makes network namespaces)"
    );
    if !args.modes.is_empty() {
        return super::proxy_modes::run(&args.modes, args.endpoints, args.changes, &args.vms);
    }
    if let Some(services) = args.rss_probe {
        return rss_probe(services, args.endpoints);
    }
    let mut report = Report::default();
    for (flavor, sizes) in [(Flavor::Legacy, &args.legacy), (Flavor::Nft, &args.nft)] {
        for &services in sizes {
            eprintln!("full sync: {services} services, iptables-{flavor}");
            report
                .full
                .push(full_syncs(flavor, services, args.endpoints, args.runs)?);
        }
    }
    for flavor in [Flavor::Legacy, Flavor::Nft] {
        eprintln!(
            "one-service change at {} services, iptables-{flavor}",
            args.change_at
        );
        report.changes.push(changes(
            flavor,
            args.change_at,
            args.endpoints,
            args.changes,
        )?);
    }
    eprintln!("memory at {} services", args.change_at);
    report.rss = Some((args.change_at, rss(args.change_at, args.endpoints)?));
    if !args.no_served {
        eprintln!("paddock proxy at {} services", args.change_at);
        report.served = Some(served::measure(args.change_at, args.endpoints)?);
    }
    let text = report.markdown(args.endpoints);
    super::publish(&text, &args.out)
}

/// `services` ClusterIP services with `endpoints` ready endpoints each.
fn synthetic_model(services: usize, endpoints: usize) -> Model {
    (0..services)
        .map(|i| {
            let port = ServicePort::cluster_ip(
                ServicePortName::new(&format!("ns{}", i % 100), &format!("svc{i}"), "http"),
                Protocol::Tcp,
                IpAddr::V4(nth_address(Ipv4Addr::new(10, 96, 0, 0), i)),
                80,
            );
            let eps = (0..endpoints)
                .map(|e| {
                    let ip = nth_address(Ipv4Addr::new(10, 128, 0, 0), i * endpoints + e);
                    Endpoint::ready(IpAddr::V4(ip), 8080)
                })
                .collect();
            Service::new(port, eps)
        })
        .collect()
}

fn nth_address(base: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n as u32 + 1)
}

fn render_config() -> RenderConfig {
    let mut config = RenderConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 56, 10)));
    config.cluster_cidr = "10.128.0.0/9".parse().ok();
    config
}

/// A fresh namespace that is gone when dropped.
fn scratch() -> Result<NetNs> {
    NetNs::create(&unique_name("pbx"))
}

/// Wall time and CPU time (this process and its children) of `f`.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Sample)> {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let value = f()?;
    let wall = started.elapsed();
    Ok((
        value,
        Sample {
            wall,
            cpu: Duration::from_secs_f64((cpu_seconds() - cpu).max(0.0)),
        },
    ))
}

pub(super) fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let seconds = |who| {
        getrusage(who)
            .map(|u| {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
                t(u.user_time()) + t(u.system_time())
            })
            .unwrap_or(0.0)
    };
    seconds(UsageWho::RUSAGE_SELF) + seconds(UsageWho::RUSAGE_CHILDREN)
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

struct FullSyncs {
    flavor: Flavor,
    services: usize,
    ours: Vec<Sample>,
    floor: Vec<Sample>,
}

fn full_syncs(flavor: Flavor, services: usize, endpoints: usize, runs: usize) -> Result<FullSyncs> {
    let model = synthetic_model(services, endpoints);
    let config = render_config();
    // What the proxier writes into an empty namespace, for the floor.
    let kernel = KernelState {
        missing_jumps: jump_rules(),
        ..KernelState::default()
    };
    let input = plan::full(
        &config,
        &base_rules(&config),
        &Applied::default(),
        &model,
        &kernel,
    )
    .transaction
    .to_restore_input();
    let mut result = FullSyncs {
        flavor,
        services,
        ours: Vec::new(),
        floor: Vec::new(),
    };
    for run in 0..runs {
        // Alternate which goes first, so that drift in the machine's load
        // does not favour one.
        for ours_turn in [run % 2 == 0, run % 2 != 0] {
            let ns = scratch()?;
            let sample = in_netns(&ns, || -> Result<Sample> {
                if ours_turn {
                    let mut proxier = Proxier::new(Iptables::new(flavor), config.clone());
                    let (report, sample) = timed(|| proxier.sync(&model))?;
                    ensure!(report.full, "the first sync was not a full one");
                    Ok(sample)
                } else {
                    let iptables = Iptables::new(flavor);
                    Ok(timed(|| iptables.restore(&input))?.1)
                }
            })?;
            if ours_turn {
                result.ours.push(sample);
            } else {
                result.floor.push(sample);
            }
        }
    }
    Ok(result)
}

struct Changes {
    flavor: Flavor,
    services: usize,
    ours: Vec<Sample>,
    floor: Vec<Sample>,
}

/// The least a change can cost: one transaction adding a rule to a hooked
/// chain and deleting it again (iptables-legacy replaces the whole table;
/// nf_tables revalidates every chain reachable from the hooks).
const CHANGE_FLOOR: &str = "*nat\n\
    -A KUBE-NODEPORTS -m comment --comment paddock-bench-floor -j RETURN\n\
    -D KUBE-NODEPORTS -m comment --comment paddock-bench-floor -j RETURN\n\
    COMMIT\n";

fn changes(flavor: Flavor, services: usize, endpoints: usize, count: usize) -> Result<Changes> {
    let mut model = synthetic_model(services, endpoints);
    let ns = scratch()?;
    let (ours, floor) = in_netns(&ns, || -> Result<(Vec<Sample>, Vec<Sample>)> {
        let iptables = Iptables::new(flavor);
        let mut proxier = Proxier::new(iptables.clone(), render_config());
        // Grow the table by partial syncs: one transaction declaring 60k
        // chains takes iptables-nft many minutes.
        let mut grown = Model::new();
        for (i, service) in model.services().enumerate() {
            grown.insert(service.clone());
            if (i + 1) % 500 == 0 || i + 1 == services {
                proxier.sync(&grown)?;
            }
        }
        let (mut ours, mut floor) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for n in 0..count {
            // Service n swaps its first endpoint for a new address.
            let name = ServicePortName::new(&format!("ns{}", n % 100), &format!("svc{n}"), "http");
            let Some(old) = model.get(&name) else {
                bail!("no service {name}");
            };
            let mut eps = old.endpoints.to_vec();
            eps[0] = Endpoint::ready(
                IpAddr::V4(nth_address(Ipv4Addr::new(10, 200, 0, 0), n)),
                8080,
            );
            model.insert(Service::new((*old.port).clone(), eps));
            let (report, sample) = timed(|| proxier.sync(&model))?;
            ensure!(
                !report.full && report.services_changed == 1,
                "unexpected sync: {report:?}"
            );
            ours.push(sample);
            floor.push(timed(|| iptables.restore(CHANGE_FLOOR))?.1);
        }
        Ok((ours, floor))
    })?;
    Ok(Changes {
        flavor,
        services,
        ours,
        floor,
    })
}

/// The peak RSS of a process that builds the model and syncs it, in KiB.
fn rss(services: usize, endpoints: usize) -> Result<u64> {
    let ns = scratch()?;
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(["bench", "proxy", "--rss-probe", &services.to_string()])
        .args(["--endpoints", &endpoints.to_string()])
        .output()
        .context("running the RSS probe")?;
    ensure!(
        out.status.success(),
        "the RSS probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("the RSS probe printed {text:?}"))
}

fn rss_probe(services: usize, endpoints: usize) -> Result<()> {
    let model = synthetic_model(services, endpoints);
    let mut proxier = Proxier::new(Iptables::new(Flavor::Legacy), render_config());
    proxier.sync(&model)?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    println!("{peak}");
    Ok(())
}

#[derive(Default)]
struct Report {
    full: Vec<FullSyncs>,
    changes: Vec<Changes>,
    rss: Option<(usize, u64)>,
    served: Option<served::Served>,
}

/// Median and p99 (nearest rank) of the samples' wall and CPU times.
struct Stats {
    wall_median: f64,
    wall_p99: f64,
    cpu_median: f64,
}

fn stats(samples: &[Sample]) -> Stats {
    let pick = |f: fn(&Sample) -> Duration, q: f64| {
        let mut values: Vec<f64> = samples.iter().map(|s| f(s).as_secs_f64() * 1e3).collect();
        values.sort_by(f64::total_cmp);
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    Stats {
        wall_median: pick(|s| s.wall, 0.5),
        wall_p99: pick(|s| s.wall, 0.99),
        cpu_median: pick(|s| s.cpu, 0.5),
    }
}

impl Report {
    fn markdown(&self, endpoints: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## Proxy: iptables full sync, {endpoints} endpoints per service\n\n\
             Ours: a fresh proxier's first sync (read the tables, render, one \
             `iptables-restore --noflush`). Floor: `iptables-restore --noflush` \
             of the same input. Fresh network namespace each; wall and CPU \
             (process + children) in ms.\n\n\
             | iptables | services | runs | ours median | ours p99 | floor median | floor p99 | ratio (wall) | ours CPU | floor CPU | ratio (CPU) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for f in &self.full {
            let (ours, floor) = (stats(&f.ours), stats(&f.floor));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
                f.flavor,
                f.services,
                f.ours.len(),
                ours.wall_median,
                ours.wall_p99,
                floor.wall_median,
                floor.wall_p99,
                ours.wall_median / floor.wall_median,
                ours.cpu_median,
                floor.cpu_median,
                ours.cpu_median / floor.cpu_median,
            );
        }
        let _ = writeln!(
            out,
            "\n## Proxy: one-service change (one endpoint replaced), partial sync\n\n\
             Floor: one transaction adding a rule to KUBE-NODEPORTS and deleting it, \
             the least any change costs in that table. ms.\n\n\
             | iptables | services | changes | ours median | ours p99 | floor median | floor p99 | ours CPU | floor CPU |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &self.changes {
            let (ours, floor) = (stats(&c.ours), stats(&c.floor));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                c.flavor,
                c.services,
                c.ours.len(),
                ours.wall_median,
                ours.wall_p99,
                floor.wall_median,
                floor.wall_p99,
                ours.cpu_median,
                floor.cpu_median
            );
        }
        if let Some((services, kib)) = self.rss {
            let _ = writeln!(
                out,
                "\n## Proxy: memory\n\nPeak RSS of a process holding the model and the \
                 iptables proxier's state after syncing {services} services × {endpoints} \
                 endpoints: {:.1} MiB.",
                kib as f64 / 1024.0
            );
        }
        if let Some(served) = &self.served {
            let mib = |kib: u64| kib as f64 / 1024.0;
            let _ = writeln!(
                out,
                "\n## Proxy: `paddock proxy` through the API\n\n\
                 `paddock server` holding {} Services with one EndpointSlice of {endpoints} \
                 endpoints each; `paddock proxy --proxy-mode iptables` (iptables-legacy) \
                 in a fresh network namespace: {:.1} s from its start to its first sync \
                 done (list, render, restore); then RSS {:.1} MiB (peak {:.1} MiB).",
                served.services,
                served.first_sync.as_secs_f64(),
                mib(served.rss_kib),
                mib(served.peak_rss_kib),
            );
        }
        out
    }
}
