//! From a Pod to CRI: the sandbox config (hostname, DNS, ports, cgroup,
//! namespaces, labels) and each container's config (image, command and
//! args expanded, env, mounts, resources, security context), as upstream's
//! kuberuntime builds them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SeccompProfile, SecurityContext};
use sha2::{Digest, Sha256};

use super::labels;
use crate::quantity;

/// Where pods live on the node and how their DNS is set up.
pub struct NodeSettings<'a> {
    pub pod_log_dir: &'a Path,
    pub cgroup_root: &'a str,
    pub cluster_dns: Option<std::net::IpAddr>,
    pub cluster_domain: &'a str,
    /// The node's resolv.conf, for `dnsPolicy: Default` (and ClusterFirst
    /// without a cluster DNS).
    pub host_resolv_conf: &'a str,
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

pub fn pod_spec(pod: &Pod) -> &PodSpec {
    static EMPTY: std::sync::OnceLock<PodSpec> = std::sync::OnceLock::new();
    pod.spec
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(PodSpec::default))
}

/// `<pod log dir>/<ns>_<name>_<uid>`, upstream's layout.
pub fn log_directory(pod: &Pod, pod_log_dir: &Path) -> String {
    pod_log_dir
        .join(format!("{}_{}_{}", namespace(pod), name(pod), uid(pod)))
        .display()
        .to_string()
}

/// Upstream's QoS class: Guaranteed, Burstable or BestEffort.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        for resource in ["cpu", "memory"] {
            let request = requests.and_then(|m| m.get(resource));
            let limit = limits.and_then(|m| m.get(resource));
            any |= request.is_some() || limit.is_some();
            let equal = match (request, limit) {
                (Some(req), Some(lim)) => req.0 == lim.0,
                (None, Some(_)) => true,
                _ => false,
            };
            guaranteed &= equal;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The pod's cgroup, upstream's cgroupfs layout under the cgroup root.
pub fn cgroup_parent(pod: &Pod, cgroup_root: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    let qos = match qos_class(pod_spec(pod)) {
        "Guaranteed" => String::new(),
        other => format!("/{}", other.to_lowercase()),
    };
    format!("{root}/kubepods{qos}/pod{}", uid(pod))
}

pub fn sandbox_config(pod: &Pod, attempt: u32, node: &NodeSettings<'_>) -> cri::PodSandboxConfig {
    let spec = pod_spec(pod);
    let sc = spec.security_context.as_ref();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(labels::POD_NAME.into(), name(pod).into());
    labels.insert(labels::POD_NAMESPACE.into(), namespace(pod).into());
    labels.insert(labels::POD_UID.into(), uid(pod).into());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name(pod).into(),
            uid: uid(pod).into(),
            namespace: namespace(pod).into(),
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: log_directory(pod, node.pod_log_dir),
        dns_config: Some(dns_config(pod, node)),
        port_mappings,
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod, node.cgroup_root),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(spec)),
                run_as_user: sc
                    .and_then(|s| s.run_as_user)
                    .map(|value| cri::Int64Value { value }),
                run_as_group: sc
                    .and_then(|s| s.run_as_group)
                    .map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental_groups(spec),
                privileged,
                seccomp: sc.and_then(|s| s.seccomp_profile.as_ref()).map(seccomp),
                ..Default::default()
            }),
            sysctls: sc
                .and_then(|s| s.sysctls.as_ref())
                .into_iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// The pod's hostname: `spec.hostname` or its name, at most 63 characters;
/// empty (the node's) for host-network pods.
fn hostname(pod: &Pod) -> String {
    let spec = pod_spec(pod);
    if spec.host_network == Some(true) {
        return String::new();
    }
    let name = spec
        .hostname
        .clone()
        .unwrap_or_else(|| name(pod).to_string());
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

fn namespace_options(spec: &PodSpec) -> cri::NamespaceOption {
    let mode = |host: Option<bool>, otherwise: cri::NamespaceMode| {
        if host == Some(true) {
            cri::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid = if spec.share_process_namespace == Some(true) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, cri::NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid),
        ipc: mode(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

fn supplemental_groups(spec: &PodSpec) -> Vec<i64> {
    let sc = spec.security_context.as_ref();
    let mut groups: Vec<i64> = sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = sc.and_then(|s| s.fs_group)
        && !groups.contains(&fs_group)
    {
        groups.push(fs_group);
    }
    groups
}

fn protocol(p: Option<&str>) -> cri::Protocol {
    match p {
        Some("UDP") => cri::Protocol::Udp,
        Some("SCTP") => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

fn seccomp(profile: &SeccompProfile) -> cri::SecurityProfile {
    let profile_type = match profile.type_.as_str() {
        "RuntimeDefault" => cri::security_profile::ProfileType::RuntimeDefault,
        "Localhost" => cri::security_profile::ProfileType::Localhost,
        _ => cri::security_profile::ProfileType::Unconfined,
    };
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref: profile.localhost_profile.clone().unwrap_or_default(),
    }
}

/// The pod's DNS: per `dnsPolicy`, merged with `dnsConfig`.
pub fn dns_config(pod: &Pod, node: &NodeSettings<'_>) -> cri::DnsConfig {
    let spec = pod_spec(pod);
    let host = parse_resolv_conf(node.host_resolv_conf);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network == Some(true);
    let cluster = match (policy, node.cluster_dns) {
        ("ClusterFirstWithHostNet", Some(dns)) => Some(dns),
        ("ClusterFirst", Some(dns)) if !host_network => Some(dns),
        _ => None,
    };
    let mut dns = match (policy, cluster) {
        ("None", _) => cri::DnsConfig::default(),
        (_, Some(server)) => {
            let domain = node.cluster_domain;
            let mut searches = vec![
                format!("{}.svc.{domain}", namespace(pod)),
                format!("svc.{domain}"),
                domain.to_string(),
            ];
            searches.extend(host.searches.iter().cloned());
            cri::DnsConfig {
                servers: vec![server.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host,
    };
    if let Some(extra) = &spec.dns_config {
        dns.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        dns.searches
            .extend(extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let name = option.name.clone().unwrap_or_default();
            dns.options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            dns.options.push(match &option.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns.searches.dedup();
    dns.searches.truncate(32);
    dns
}

/// nameserver, search and options lines of a resolv.conf.
fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut dns = cri::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(String::from)),
            Some("search") => dns.searches = words.map(String::from).collect(),
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
}

/// The kubelet-managed /etc/hosts of a pod with `ips`.
pub fn hosts_file(pod: &Pod, ips: &[String], cluster_domain: &str) -> String {
    let spec = pod_spec(pod);
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let hostname = hostname(pod);
    let names = match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => format!(
            "{hostname}.{sub}.{}.svc.{cluster_domain}\t{hostname}",
            namespace(pod)
        ),
        None => hostname,
    };
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{names}\n"));
    }
    let aliases = spec.host_aliases.as_deref().unwrap_or(&[]);
    if !aliases.is_empty() {
        hosts.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            hosts.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    hosts
}

/// A stable hash of the container's spec: a change restarts it.
pub fn container_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

/// What a container config is made from, besides the pod.
pub struct ContainerInputs<'a> {
    pub container: &'a Container,
    pub restart_count: i32,
    pub image_ref: &'a str,
    pub env: &'a [(String, String)],
    pub mounts: Vec<cri::Mount>,
}

pub fn container_config(pod: &Pod, input: ContainerInputs<'_>) -> cri::ContainerConfig {
    let c = input.container;
    let spec = pod_spec(pod);
    let defined: HashMap<&str, &str> = input
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expand = |args: &Option<Vec<String>>| -> Vec<String> {
        args.iter()
            .flatten()
            .map(|a| super::env::expand(a, &defined))
            .collect()
    };
    let labels = HashMap::from([
        (labels::POD_NAME.to_string(), name(pod).to_string()),
        (
            labels::POD_NAMESPACE.to_string(),
            namespace(pod).to_string(),
        ),
        (labels::POD_UID.to_string(), uid(pod).to_string()),
        (labels::CONTAINER_NAME.to_string(), c.name.clone()),
    ]);
    let annotations = HashMap::from([
        (
            labels::RESTART_COUNT.to_string(),
            input.restart_count.to_string(),
        ),
        (labels::CONTAINER_HASH.to_string(), container_hash(c)),
        (
            labels::TERMINATION_MESSAGE_PATH.to_string(),
            termination_message_path(c).to_string(),
        ),
        (
            labels::GRACE_PERIOD.to_string(),
            spec.termination_grace_period_seconds
                .unwrap_or(30)
                .to_string(),
        ),
    ]);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: input.restart_count as u32,
        }),
        image: Some(cri::ImageSpec {
            image: input.image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand(&c.command),
        args: expand(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: input
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: input.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, input.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(c, qos_class(spec))),
            security_context: Some(security_context(spec, c.security_context.as_ref())),
        }),
        ..Default::default()
    }
}

pub fn termination_message_path(c: &Container) -> &str {
    c.termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("/dev/termination-log")
}

/// CPU shares and quota, memory limit and OOM score, as upstream.
fn resources(c: &Container, qos: &str) -> cri::LinuxContainerResources {
    let r = c.resources.as_ref();
    let get = |list: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               name: &str| list.and_then(|l| l.get(name)).map(|q| q.0.clone());
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let cpu_request = get(requests, "cpu")
        .or_else(|| get(limits, "cpu"))
        .and_then(|q| quantity::millis(&q).ok())
        .unwrap_or(0);
    let cpu_limit = get(limits, "cpu").and_then(|q| quantity::millis(&q).ok());
    let memory_limit = get(limits, "memory").and_then(|q| quantity::units(&q).ok());
    const PERIOD: i64 = 100_000;
    cri::LinuxContainerResources {
        cpu_shares: (cpu_request * 1024 / 1000).max(2),
        cpu_period: if cpu_limit.is_some() { PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, |m| (m * PERIOD / 1000).max(1000)),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        oom_score_adj: match qos {
            "Guaranteed" => -997,
            "BestEffort" => 1000,
            _ => 999,
        },
        ..Default::default()
    }
}

/// Upstream's default masked and read-only paths.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's security context over the pod's.
fn security_context(
    spec: &PodSpec,
    sc: Option<&SecurityContext>,
) -> cri::LinuxContainerSecurityContext {
    let pod = spec.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let paths = |list: &[&str]| -> Vec<String> {
        if privileged || unmasked {
            Vec::new()
        } else {
            list.iter().map(|p| p.to_string()).collect()
        }
    };
    let capabilities = sc.and_then(|s| s.capabilities.as_ref());
    cri::LinuxContainerSecurityContext {
        capabilities: capabilities.map(|caps| cri::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(spec)),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod.and_then(|p| p.run_as_user))
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or_else(|| pod.and_then(|p| p.run_as_group))
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: supplemental_groups(spec),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: paths(MASKED_PATHS),
        readonly_paths: paths(READONLY_PATHS),
        seccomp: sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .or_else(|| pod.and_then(|p| p.seccomp_profile.as_ref()))
            .map(seccomp),
        ..Default::default()
    }
}

/// Whether the container must not run as root, and the user it would run
/// as (its runAsUser, else the image's): an error for
/// `CreateContainerConfigError` if that user is (or may be) root.
pub fn verify_non_root(
    spec: &PodSpec,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let sc = c.security_context.as_ref();
    let pod = spec.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod.and_then(|p| p.run_as_user));
    match (uid, image_uid) {
        (Some(0), _) => Err("container's runAsUser breaks non-root policy".into()),
        (Some(_), _) => Ok(()),
        (None, Some(0)) => Err("container has runAsNonRoot and image will run as root".into()),
        (None, Some(_)) => Ok(()),
        (None, None) if !image_user.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root"
        )),
        (None, None) => Err("container has runAsNonRoot and image will run as root".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn node(dns: Option<&str>) -> NodeSettings<'static> {
        NodeSettings {
            pod_log_dir: Path::new("/var/log/pods"),
            cgroup_root: "/paddock",
            cluster_dns: dns.map(|d| d.parse().unwrap()),
            cluster_domain: "cluster.local",
            host_resolv_conf: "nameserver 192.168.56.1\nsearch lab\noptions edns0\n",
        }
    }

    fn resources(
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
    ) -> Option<ResourceRequirements> {
        let list = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Some(ResourceRequirements {
            requests: list(requests),
            limits: list(limits),
            ..Default::default()
        })
    }

    #[test]
    fn cluster_first_dns_searches_the_namespace() {
        let p = pod(PodSpec::default());
        let dns = dns_config(&p, &node(Some("10.96.0.10")));
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lab"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
        // Without a cluster DNS, the node's.
        let dns = dns_config(&p, &node(None));
        assert_eq!(dns.servers, ["192.168.56.1"]);
        assert_eq!(dns.options, ["edns0"]);
    }

    #[test]
    fn dns_config_is_merged_and_none_starts_empty() {
        let p = pod(PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["1.1.1.1".into()]),
                options: Some(vec![PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let dns = dns_config(&p, &node(Some("10.96.0.10")));
        assert_eq!(dns.servers, ["1.1.1.1"]);
        assert_eq!(dns.options, ["ndots:2"]);
    }

    #[test]
    fn qos_classes_and_cgroups() {
        let c = |r| Container {
            name: "c".into(),
            resources: r,
            ..Default::default()
        };
        let spec = |r| PodSpec {
            containers: vec![c(r)],
            ..Default::default()
        };
        assert_eq!(qos_class(&spec(None)), "BestEffort");
        let guaranteed = resources(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
        );
        assert_eq!(qos_class(&spec(guaranteed.clone())), "Guaranteed");
        assert_eq!(
            qos_class(&spec(resources(&[("cpu", "100m")], &[]))),
            "Burstable"
        );
        assert_eq!(
            cgroup_parent(&pod(spec(None)), "/paddock/"),
            "/paddock/kubepods/besteffort/podu1"
        );
        assert_eq!(
            cgroup_parent(&pod(spec(guaranteed)), "/paddock"),
            "/paddock/kubepods/podu1"
        );
    }

    #[test]
    fn resources_become_shares_quota_and_limits() {
        let c = Container {
            resources: resources(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]),
            ..Default::default()
        };
        let r = super::resources(&c, "Burstable");
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (256, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        let r = super::resources(&Container::default(), "BestEffort");
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 1000)
        );
    }

    #[test]
    fn command_and_args_expand_env_references() {
        let c = Container {
            name: "app".into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(GREETING) $(UNSET)".into()]),
            ..Default::default()
        };
        let p = pod(PodSpec {
            containers: vec![c.clone()],
            ..Default::default()
        });
        let env = vec![("GREETING".to_string(), "hello".to_string())];
        let config = container_config(
            &p,
            ContainerInputs {
                container: &c,
                restart_count: 2,
                image_ref: "sha256:abc",
                env: &env,
                mounts: Vec::new(),
            },
        );
        assert_eq!(config.args, ["echo hello $(UNSET)"]);
        assert_eq!(config.log_path, "app/2.log");
        assert_eq!(config.metadata.unwrap().attempt, 2);
        assert_eq!(config.labels[labels::POD_UID], "u1");
        assert_eq!(config.annotations[labels::RESTART_COUNT], "2");
        let image = config.image.unwrap();
        assert_eq!(
            (image.image.as_str(), image.user_specified_image.as_str()),
            ("sha256:abc", "busybox")
        );
        let sc = config.linux.unwrap().security_context.unwrap();
        assert!(sc.masked_paths.contains(&"/proc/kcore".to_string()));
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let mut p = pod(PodSpec::default());
        let hosts = hosts_file(&p, &["10.244.0.5".into()], "cluster.local");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.0.5\tweb\n"), "{hosts}");
        p.spec.as_mut().unwrap().subdomain = Some("svc".into());
        p.spec.as_mut().unwrap().host_aliases = Some(vec![k8s_openapi::api::core::v1::HostAlias {
            ip: "1.2.3.4".into(),
            hostnames: Some(vec!["a".into(), "b".into()]),
        }]);
        let hosts = hosts_file(&p, &["10.244.0.5".into()], "cluster.local");
        assert!(
            hosts.contains("10.244.0.5\tweb.svc.shop.svc.cluster.local\tweb\n"),
            "{hosts}"
        );
        assert!(
            hosts.ends_with("# Entries added by HostAliases.\n1.2.3.4\ta\tb\n"),
            "{hosts}"
        );
    }

    #[test]
    fn run_as_non_root_is_verified() {
        let spec = PodSpec::default();
        let c = Container {
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(verify_non_root(&spec, &c, Some(0), "").is_err());
        assert!(verify_non_root(&spec, &c, Some(33), "").is_ok());
        let err = verify_non_root(&spec, &c, None, "nginx").unwrap_err();
        assert!(err.contains("non-numeric user (nginx)"), "{err}");
        assert!(verify_non_root(&spec, &Container::default(), Some(0), "").is_ok());
    }
}
