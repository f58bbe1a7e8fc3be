//! What `paddock agent`'s flags set.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Taint;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API server, `https://HOST:PORT`.
    pub server: String,
    /// The join token (`K10<CA hash>::server:<secret>`).
    pub token: String,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// State lives in `<data_dir>/agent/`.
    pub data_dir: PathBuf,
    /// The CRI socket (a path; `unix://` stripped).
    pub runtime_endpoint: PathBuf,
    /// Where the CNI network list for the node's podCIDR is written.
    pub cni_conf_dir: PathBuf,
    /// Container logs, `<dir>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub pod_log_dir: PathBuf,
    /// The cgroup under which pods get theirs (`/kubepods` below it).
    pub cgroup_root: String,
    /// The kubelet API's port.
    pub kubelet_port: u16,
    /// The cluster DNS service's address; pods with `dnsPolicy:
    /// ClusterFirst` fall back to the node's resolv.conf without one.
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    /// Labels the Node gets besides the well-known ones.
    pub node_labels: BTreeMap<String, String>,
    /// Taints the Node is created with (as the kubelet's
    /// `--register-with-taints`, k3s's `--node-taint`).
    pub node_taints: Vec<Taint>,
    pub max_pods: u32,
    pub timing: Timing,
}

/// Periods that tests may shorten; upstream's values by default.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often the Lease is renewed.
    pub lease_renew: Duration,
    /// How often the node's conditions are checked.
    pub node_status_check: Duration,
    /// How often an unchanged node status is posted anyway.
    pub node_status_report: Duration,
    /// How often the runtime is relisted for container state changes.
    pub relist: Duration,
    /// The first delay of CrashLoopBackOff and ImagePullBackOff.
    pub backoff_initial: Duration,
    /// The longest such delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_renew: Duration::from_secs(10),
            node_status_check: Duration::from_secs(10),
            node_status_report: Duration::from_secs(60),
            relist: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Config {
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    /// Per-pod directories (volumes, hosts file, termination messages).
    pub fn pods_dir(&self) -> PathBuf {
        self.agent_dir().join("pods")
    }

    /// host-local's IP reservations for the node's podCIDR.
    pub fn ipam_dir(&self) -> PathBuf {
        self.agent_dir().join("ipam")
    }
}

/// A taint as k3s's `--node-taint` and the kubelet's
/// `--register-with-taints` take it: `KEY[=VALUE]:EFFECT`.
pub fn parse_taint(text: &str) -> Result<Taint> {
    let Some((key_value, effect)) = text.rsplit_once(':') else {
        bail!("taint {text:?} is not KEY[=VALUE]:EFFECT");
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        bail!("taint {text:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute");
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (key_value, None),
    };
    if key.is_empty() {
        bail!("taint {text:?} has no key");
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_as_k3s_takes_them() {
        let t = parse_taint("node-role.kubernetes.io/master:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("node-role.kubernetes.io/master", None, "NoSchedule")
        );
        let t = parse_taint("dedicated=gpu:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoExecute")
        );
        for bad in [
            "dedicated=gpu",
            "dedicated:Never",
            ":NoSchedule",
            "=x:NoSchedule",
        ] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
    }
}
