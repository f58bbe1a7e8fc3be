//! The proxy's configuration: upstream kube-proxy's flags, also as k3s's
//! `--kube-proxy-arg key=value` pairs, and the backend each mode makes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;

use crate::backend::Backend;
use crate::iptables::{self, Flavor, Iptables, RenderConfig};
use crate::ipvs;

/// `--proxy-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Iptables,
    Ipvs,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "iptables" | "" => Ok(Mode::Iptables),
            "ipvs" => Ok(Mode::Ipvs),
            other => bail!("unknown proxy mode {other:?} (expected iptables or ipvs)"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// How IPVS virtual servers pick a real server (IPVS mode).
    pub ipvs_scheduler: ipvs::netlink::Scheduler,
    /// This node's name: endpoints on it are local.
    pub node_name: String,
    /// This node's IP; its family is the family of the services proxied.
    pub node_ip: IpAddr,
    /// The pods' CIDR: traffic from it is the cluster's own.
    pub cluster_cidr: Option<IpNet>,
    pub masquerade_all: bool,
    /// At least this long between two syncs.
    pub min_sync_period: Duration,
    /// A sync at least this often, changes or not.
    pub sync_period: Duration,
    /// Where `/healthz` is served (none: not served).
    pub healthz_bind_address: Option<SocketAddr>,
    /// Where `/metrics` is served (none: not served).
    pub metrics_bind_address: Option<SocketAddr>,
    /// Whether this node contends to announce load-balancer IPs on its LAN.
    pub announce_load_balancers: bool,
}

impl Config {
    /// Upstream's defaults for everything but the node.
    pub fn new(node_name: &str, node_ip: IpAddr) -> Config {
        Config {
            mode: Mode::Iptables,
            ipvs_scheduler: ipvs::netlink::Scheduler::RoundRobin,
            node_name: node_name.to_string(),
            node_ip,
            cluster_cidr: None,
            masquerade_all: false,
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            healthz_bind_address: Some(SocketAddr::from(([0, 0, 0, 0], 10256))),
            metrics_bind_address: Some(SocketAddr::from(([127, 0, 0, 1], 10249))),
            announce_load_balancers: true,
        }
    }
}

/// Makes the backend for `config.mode`.
pub fn backend(config: &Config) -> Result<Box<dyn Backend>> {
    match config.mode {
        Mode::Iptables => {
            let flavor = Flavor::detect()?;
            tracing::info!(%flavor, "using iptables");
            let mut render = RenderConfig::new(config.node_ip);
            render.cluster_cidr = config.cluster_cidr;
            render.masquerade_all = config.masquerade_all;
            render.drop_invalid = !tcp_be_liberal();
            Ok(Box::new(iptables::Proxier::new(
                Iptables::new(flavor),
                render,
            )))
        }
        Mode::Ipvs => {
            let mut ipvs = ipvs::Config::new(config.node_ip);
            ipvs.scheduler = config.ipvs_scheduler.clone();
            ipvs.cluster_cidr = config.cluster_cidr;
            ipvs.masquerade_all = config.masquerade_all;
            // Load-balancer IPs sit on every node's kube-ipvs0; only the
            // announcing node may answer ARP for them.
            ipvs.strict_arp = config.announce_load_balancers;
            Ok(Box::new(ipvs::Proxier::new(ipvs)?))
        }
    }
}

/// Whether the host accepts out-of-window TCP packets, in which case
/// INVALID ones are not dropped (as upstream).
fn tcp_be_liberal() -> bool {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal")
        .is_ok_and(|v| v.trim() != "0")
}

impl Config {
    /// Applies one `key=value` of k3s's `--kube-proxy-arg` (upstream flag
    /// names without the dashes), as `paddock server` and `paddock agent`
    /// take them.
    pub fn apply_kube_proxy_arg(&mut self, arg: &str) -> Result<()> {
        let (key, value) = arg
            .trim_start_matches("--")
            .split_once('=')
            .with_context(|| format!("--kube-proxy-arg {arg:?} is not key=value"))?;
        match key {
            "proxy-mode" => self.mode = value.parse()?,
            "ipvs-scheduler" => self.ipvs_scheduler = value.parse().map_err(anyhow::Error::msg)?,
            "hostname-override" => self.node_name = value.trim().to_lowercase(),
            "min-sync-period" => self.min_sync_period = parse_duration(value)?,
            "sync-period" => self.sync_period = parse_duration(value)?,
            "masquerade-all" => {
                self.masquerade_all = value
                    .parse()
                    .with_context(|| format!("masquerade-all={value:?}: true or false"))?
            }
            "cluster-cidr" => {
                self.cluster_cidr = Some(
                    value
                        .parse()
                        .with_context(|| format!("cluster-cidr={value:?} is not a CIDR"))?,
                )
            }
            "healthz-bind-address" => self.healthz_bind_address = parse_bind_address(value, 10256)?,
            "metrics-bind-address" => self.metrics_bind_address = parse_bind_address(value, 10249)?,
            other => bail!("unknown --kube-proxy-arg {other:?}"),
        }
        Ok(())
    }
}

/// `IP:port`, a bare IP (with `default_port`), or "" for none.
pub fn parse_bind_address(text: &str, default_port: u16) -> Result<Option<SocketAddr>> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = text.parse() {
        return Ok(Some(addr));
    }
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("{text:?} is neither IP:port nor an IP"))?;
    Ok(Some(SocketAddr::new(ip, default_port)))
}

/// A Go duration, as upstream's flags take them: `1s`, `500ms`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number
            .parse()
            .with_context(|| format!("{text:?} is not a duration like 1s or 500ms"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("{text:?}: unknown unit {unit:?} (ns, us, ms, s, m, h)"),
        };
        total += Duration::from_secs_f64(value * seconds);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn bind_addresses() {
        assert_eq!(parse_bind_address("", 10256).unwrap(), None);
        assert_eq!(
            parse_bind_address("127.0.0.1", 10249).unwrap(),
            Some("127.0.0.1:10249".parse().unwrap())
        );
        assert_eq!(
            parse_bind_address("0.0.0.0:9999", 10249).unwrap(),
            Some("0.0.0.0:9999".parse().unwrap())
        );
        assert!(parse_bind_address("nowhere", 1).is_err());
    }

    #[test]
    fn kube_proxy_args_like_k3s() {
        let mut config = Config::new("n1", "192.168.56.11".parse().unwrap());
        for arg in [
            "proxy-mode=iptables",
            "min-sync-period=2s",
            "--sync-period=1m",
            "masquerade-all=true",
            "cluster-cidr=10.42.0.0/16",
            "metrics-bind-address=0.0.0.0",
            "healthz-bind-address=",
        ] {
            config.apply_kube_proxy_arg(arg).unwrap();
        }
        assert_eq!(config.min_sync_period, Duration::from_secs(2));
        assert_eq!(config.sync_period, Duration::from_secs(60));
        assert!(config.masquerade_all);
        assert_eq!(config.cluster_cidr, Some("10.42.0.0/16".parse().unwrap()));
        assert_eq!(
            config.metrics_bind_address,
            Some("0.0.0.0:10249".parse().unwrap())
        );
        assert_eq!(config.healthz_bind_address, None);
        let err = config
            .apply_kube_proxy_arg("proxy-mode=userspace")
            .unwrap_err();
        assert!(err.to_string().contains("userspace"), "{err}");
        assert!(config.apply_kube_proxy_arg("v=2").is_err());
        assert!(config.apply_kube_proxy_arg("proxy-mode").is_err());
    }

    #[test]
    fn ipvs_mode_and_scheduler_as_kube_proxy_args() {
        let mut config = Config::new("n1", "192.168.56.11".parse().unwrap());
        config.apply_kube_proxy_arg("proxy-mode=ipvs").unwrap();
        config.apply_kube_proxy_arg("ipvs-scheduler=sh").unwrap();
        assert_eq!(config.mode, Mode::Ipvs);
        assert_eq!(config.ipvs_scheduler.name(), "sh");
        let err = config
            .apply_kube_proxy_arg("ipvs-scheduler=fastest")
            .unwrap_err();
        assert!(err.to_string().contains("rr, lc, wrr or sh"), "{err}");
    }
}
