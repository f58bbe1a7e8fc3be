//! The controller flags of `paddock server` (upstream kube-controller-manager
//! names, and kube-apiserver's for how long pods stay on failed nodes) and
//! starting the controllers beside the apiserver.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use paddock_apiserver::controllers::{self, loadbalancer::LbPool};
use paddock_apiserver::defaults::Admission;

#[derive(clap::Args)]
pub struct Flags {
    /// Addresses for LoadBalancer Services, e.g. 192.168.56.200-192.168.56.250
    /// (ranges, CIDRs or addresses, comma-separated); without it they get
    /// the Ready nodes' InternalIPs.
    #[arg(long)]
    lb_pool: Option<LbPool>,
    /// How long a node may go without renewing its Lease before it is
    /// NotReady (Unknown) and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// Seconds a pod stays on a NotReady node before it is evicted, unless
    /// it tolerates `node.kubernetes.io/not-ready` itself.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(0..))]
    default_not_ready_toleration_seconds: i64,
    /// Seconds a pod stays on an unreachable node (no Lease renewal) before
    /// it is evicted, unless it tolerates `node.kubernetes.io/unreachable`
    /// itself.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(0..))]
    default_unreachable_toleration_seconds: i64,
    /// Run without the scheduler (pods stay Pending unless something else binds them).
    #[arg(long)]
    disable_scheduler: bool,
}

impl Flags {
    pub fn config(&self, cluster_cidr: Ipv4Net) -> controllers::Config {
        let mut config = controllers::Config::new(cluster_cidr);
        config.lb_pool = self.lb_pool.clone();
        config.node_monitor_grace_period = self.node_monitor_grace_period;
        config.node_monitor_period = self.node_monitor_period;
        config.disable_scheduler = self.disable_scheduler;
        config
    }

    /// The default tolerations the apiserver gives pods.
    pub fn admission(&self) -> Admission {
        Admission {
            not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        }
    }
}

/// Runs the controllers until dropped, starting them again if they stop.
pub async fn run(client: kube::Client, config: controllers::Config) {
    loop {
        if let Err(e) = controllers::run(client.clone(), config.clone()).await {
            tracing::error!("controllers stopped, starting them again: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `40s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 40s"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => bail!("{s:?} is not a duration like 40s (units: ms, s, m, h)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s").unwrap(), Duration::from_secs(40));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
    }
}
