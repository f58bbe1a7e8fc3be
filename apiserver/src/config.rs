//! The server's configuration (what `paddock server`'s flags set).

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::defaults::Admission;

#[derive(Debug, Clone)]
pub struct Config {
    /// State lives in `<data_dir>/server/`.
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_port: u16,
    /// The address Services and agents reach this server at.
    pub advertise_address: Option<IpAddr>,
    pub node_ip: Option<IpAddr>,
    pub service_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub node_port_range: RangeInclusive<u16>,
    /// The join token's secret (or a whole token); made once if unset.
    pub token: Option<String>,
    /// Where to write the admin kubeconfig.
    pub write_kubeconfig: Option<PathBuf>,
    pub disable_agent: bool,
    pub compaction: Compaction,
    /// What admission adds to pods (default tolerations).
    pub admission: Admission,
}

/// How the revision log is compacted.
#[derive(Debug, Clone)]
pub struct Compaction {
    pub interval: Duration,
    /// Revisions younger than this are kept (watches may resume from them).
    pub retention: Duration,
}

impl Default for Compaction {
    fn default() -> Compaction {
        Compaction {
            interval: Duration::from_secs(60),
            retention: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// k3s-like defaults under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            https_port: 6443,
            advertise_address: None,
            node_ip: None,
            service_cidr: Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), 12).unwrap_or_default(),
            cluster_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
            node_port_range: 30000..=32767,
            token: None,
            write_kubeconfig: None,
            disable_agent: false,
            compaction: Compaction::default(),
            admission: Admission::default(),
        }
    }

    pub fn server_dir(&self) -> PathBuf {
        self.data_dir.join("server")
    }
}
