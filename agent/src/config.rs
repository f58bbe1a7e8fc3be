//! What `paddock agent`'s flags set.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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
