//! The OCI runtime spec of a container, from its CRI config, its image's
//! config and its pod, with containerd's defaults: the default capability
//! set, masked and read-only /proc and /sys paths, the RuntimeDefault
//! seccomp profile when asked for, `/dev/shm` and `/etc/{hostname,hosts,
//! resolv.conf}` shared by the pod.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{
    ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, MountPropagation,
    NamespaceMode, security_profile::ProfileType,
};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};

use super::{seccomp, user};
use crate::error::{Error, Result};
use crate::sandbox::{self, Sandbox, namespaces};

/// containerd's default capabilities.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, for privileged containers and `add: [ALL]`.
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container's spec is made from.
pub struct Input<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a Sandbox,
    pub sandbox_dir: &'a Path,
    pub image: &'a ImageConfiguration,
    pub rootfs: &'a Path,
}

fn internal(e: impl Into<anyhow::Error>) -> Error {
    Error::Internal(e.into())
}

/// The cgroup a container of `sandbox` gets.
pub fn cgroup_path(sandbox: &Sandbox, id: &str) -> String {
    format!("{}/{id}", sandbox.cgroup_parent.trim_end_matches('/'))
}

pub fn build(input: &Input) -> Result<Spec> {
    let security = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let privileged = security.privileged;
    let image = input.image.config().clone().unwrap_or_default();

    let args = command(input.config, &image)?;
    let env = environment(input.config, &image);
    let cwd = match (&input.config.working_dir, image.working_dir()) {
        (dir, _) if !dir.is_empty() => dir.clone(),
        (_, Some(dir)) if !dir.is_empty() => dir.clone(),
        _ => "/".to_string(),
    };
    let user = run_as(
        input.rootfs,
        &security,
        image.user().as_deref().unwrap_or(""),
    )?;
    let capabilities = capabilities(&security, privileged)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(capabilities.clone())
                .effective(capabilities.clone())
                .permitted(capabilities)
                .build()
                .map_err(internal)?,
        )
        .no_new_privileges(security.no_new_privs)
        .oom_score_adj(oom_score_adj(
            input
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref()),
        ))
        .build()
        .map_err(internal)?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(input.sandbox, input.sandbox_dir, &security))
        .cgroups_path(PathBuf::from(cgroup_path(input.sandbox, input.id)))
        .resources(resources(
            input
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref()),
            privileged,
        )?)
        .sysctl(input.sandbox.sysctls());
    if !privileged {
        let mut masked = get_default_maskedpaths();
        masked.push("/sys/devices/virtual/powercap".to_string());
        linux = linux
            .masked_paths(masked)
            .readonly_paths(get_default_readonly_paths());
    }
    if let Some(profile) = seccomp_profile(&security, privileged)? {
        linux = linux.seccomp(profile);
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(security.readonly_rootfs)
                .build()
                .map_err(internal)?,
        )
        .process(process)
        .mounts(mounts(input, privileged)?)
        .linux(linux.build().map_err(internal)?)
        .build()
        .map_err(internal)?;
    // The builder starts from oci-spec's default hostname; the pod's UTS
    // namespace has its hostname already, and a host-network pod keeps the
    // node's.
    spec.set_hostname(None);
    Ok(spec)
}

/// CRI command/args over the image's entrypoint/cmd, as Kubernetes defines.
fn command(config: &ContainerConfig, image: &oci_spec::image::Config) -> Result<Vec<String>> {
    let entrypoint = image.entrypoint().clone().unwrap_or_default();
    let cmd = image.cmd().clone().unwrap_or_default();
    let args: Vec<String> = if !config.command.is_empty() {
        config.command.iter().chain(&config.args).cloned().collect()
    } else if !config.args.is_empty() {
        entrypoint.into_iter().chain(config.args.clone()).collect()
    } else {
        entrypoint.into_iter().chain(cmd).collect()
    };
    if args.is_empty() {
        return Err(Error::invalid(
            "no command specified: the image has no entrypoint or cmd",
        ));
    }
    Ok(args)
}

/// The image's environment, overridden by the CRI's by name.
fn environment(config: &ContainerConfig, image: &oci_spec::image::Config) -> Vec<String> {
    let mut env: Vec<String> = image.env().clone().unwrap_or_default();
    for kv in &config.envs {
        let prefix = format!("{}=", kv.key);
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{}={}", kv.key, kv.value));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

fn run_as(
    rootfs: &Path,
    security: &LinuxContainerSecurityContext,
    image_user: &str,
) -> Result<oci_spec::runtime::User> {
    let group = security.run_as_group.as_ref().map(|g| g.value as u32);
    let spec = if let Some(uid) = &security.run_as_user {
        uid.value.to_string()
    } else if !security.run_as_username.is_empty() {
        security.run_as_username.clone()
    } else {
        image_user.to_string()
    };
    let resolved = user::resolve(rootfs, &spec, group)?;
    let mut gids = resolved.additional_gids;
    gids.extend(security.supplemental_groups.iter().map(|g| *g as u32));
    gids.sort_unstable();
    gids.dedup();
    UserBuilder::default()
        .uid(resolved.uid)
        .gid(resolved.gid)
        .additional_gids(gids)
        .build()
        .map_err(internal)
}

fn parse_capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| Error::invalid(format!("unknown capability {name:?}")))
}

fn capabilities(
    security: &LinuxContainerSecurityContext,
    privileged: bool,
) -> Result<Capabilities> {
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<HashSet<_>>>()
    };
    if privileged {
        return all();
    }
    let mut caps: Capabilities = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_>>()?;
    if let Some(wanted) = &security.capabilities {
        let is_all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
        if is_all(&wanted.add_capabilities) {
            caps = all()?;
        } else {
            for c in &wanted.add_capabilities {
                caps.insert(parse_capability(c)?);
            }
        }
        if is_all(&wanted.drop_capabilities) {
            caps.clear();
        } else {
            for c in &wanted.drop_capabilities {
                caps.remove(&parse_capability(c)?);
            }
        }
        for c in &wanted.add_ambient_capabilities {
            caps.insert(parse_capability(c)?);
        }
    }
    Ok(caps)
}

fn seccomp_profile(
    security: &LinuxContainerSecurityContext,
    privileged: bool,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    if privileged {
        return Ok(None);
    }
    let Some(profile) = &security.seccomp else {
        return Ok(None);
    };
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(Some(seccomp::runtime_default()?)),
        Ok(ProfileType::Unconfined) => Ok(None),
        Ok(ProfileType::Localhost) => {
            let text = std::fs::read_to_string(&profile.localhost_ref).map_err(|e| {
                Error::invalid(format!("seccomp profile {}: {e}", profile.localhost_ref))
            })?;
            serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::invalid(format!("seccomp profile {}: {e}", profile.localhost_ref))
            })
        }
        Err(_) => Err(Error::invalid(format!(
            "unknown seccomp profile type {}",
            profile.profile_type
        ))),
    }
}

/// The runtime cannot lower its children's OOM score below its own (no
/// CAP_SYS_RESOURCE on some hosts): clamp as containerd's
/// `restrict_oom_score_adj` does.
fn oom_score_adj(resources: Option<&LinuxContainerResources>) -> i32 {
    let wanted = resources.map_or(0, |r| r.oom_score_adj as i32);
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    wanted.max(own)
}

pub fn resources(
    resources: Option<&LinuxContainerResources>,
    privileged: bool,
) -> Result<oci_spec::runtime::LinuxResources> {
    let mut builder = LinuxResourcesBuilder::default();
    if privileged {
        builder = builder.devices(vec![
            oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()
                .map_err(internal)?,
        ]);
    }
    let Some(r) = resources else {
        return builder.build().map_err(internal);
    };
    let mut cpu = LinuxCpuBuilder::default();
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
    }
    if r.cpu_quota > 0 {
        cpu = cpu.quota(r.cpu_quota);
    }
    if r.cpu_period > 0 {
        cpu = cpu.period(r.cpu_period as u64);
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
    }
    builder = builder.cpu(cpu.build().map_err(internal)?);
    if r.memory_limit_in_bytes > 0 {
        builder = builder.memory(
            LinuxMemoryBuilder::default()
                .limit(r.memory_limit_in_bytes)
                .build()
                .map_err(internal)?,
        );
    }
    if !r.unified.is_empty() {
        builder = builder.unified(r.unified.clone());
    }
    builder.build().map_err(internal)
}

fn namespaces(
    sandbox: &Sandbox,
    dir: &Path,
    security: &LinuxContainerSecurityContext,
) -> Vec<LinuxNamespace> {
    let new = |typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .expect("a namespace without a path")
    };
    let join = |typ, kind| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(namespaces::path(dir, kind))
            .build()
            .expect("a namespace with a path")
    };
    let mut list = vec![new(LinuxNamespaceType::Mount)];
    let pid_mode = security
        .namespace_options
        .as_ref()
        .and_then(|o| NamespaceMode::try_from(o.pid).ok())
        .unwrap_or(NamespaceMode::Container);
    if pid_mode != NamespaceMode::Node && !sandbox.host_pid() {
        list.push(new(LinuxNamespaceType::Pid));
    }
    let owned = sandbox.owned_namespaces();
    for (typ, kind) in [
        (LinuxNamespaceType::Network, namespaces::Kind::Net),
        (LinuxNamespaceType::Ipc, namespaces::Kind::Ipc),
        (LinuxNamespaceType::Uts, namespaces::Kind::Uts),
    ] {
        if owned.contains(&kind) {
            list.push(join(typ, kind));
        }
    }
    list
}

fn mount(
    destination: &str,
    typ: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source.into())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(internal)
}

fn mounts(input: &Input, privileged: bool) -> Result<Vec<Mount>> {
    let sys = if privileged { "rw" } else { "ro" };
    let mut list = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        )?,
    ];
    let cri_targets: HashSet<&str> = input
        .config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    let shm = if input.sandbox.host_ipc() {
        PathBuf::from("/dev/shm")
    } else {
        sandbox::shm_dir(input.sandbox_dir)
    };
    if !cri_targets.contains("/dev/shm") {
        list.push(mount(
            "/dev/shm",
            "bind",
            shm,
            &["rbind", "nosuid", "nodev", "noexec"],
        )?);
    }
    for file in ["hostname", "hosts", "resolv.conf"] {
        let target = format!("/etc/{file}");
        if !cri_targets.contains(target.as_str()) {
            list.push(mount(
                &target,
                "bind",
                input.sandbox_dir.join(file),
                &["rbind", "rprivate", "rw"],
            )?);
        }
    }
    let mut cri_mounts: Vec<&k8s_cri::v1::Mount> = input.config.mounts.iter().collect();
    cri_mounts.sort_by_key(|m| Path::new(&m.container_path).components().count());
    for m in cri_mounts {
        if !Path::new(&m.container_path).is_absolute() {
            return Err(Error::invalid(format!(
                "mount target {:?} is not absolute",
                m.container_path
            )));
        }
        let source = Path::new(&m.host_path);
        if !source.exists() {
            std::fs::create_dir_all(source)
                .map_err(|e| Error::invalid(format!("mount source {}: {e}", m.host_path)))?;
        }
        let propagation = match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        let mode = if m.readonly { "ro" } else { "rw" };
        list.push(mount(
            &m.container_path,
            "bind",
            source,
            &["rbind", propagation, mode],
        )?);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{Capability as CriCapability, KeyValue};

    fn image(entrypoint: &[&str], cmd: &[&str]) -> oci_spec::image::Config {
        let mut config = oci_spec::image::Config::default();
        config.set_entrypoint(Some(entrypoint.iter().map(|s| s.to_string()).collect()));
        config.set_cmd(Some(cmd.iter().map(|s| s.to_string()).collect()));
        config.set_env(Some(vec!["PATH=/bin".into(), "A=image".into()]));
        config
    }

    #[test]
    fn command_and_args_override_the_image_as_kubernetes_says() -> Result<()> {
        let img = image(&["/entry"], &["default"]);
        let mut c = ContainerConfig::default();
        assert_eq!(command(&c, &img)?, ["/entry", "default"]);
        c.args = vec!["x".into()];
        assert_eq!(command(&c, &img)?, ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        assert_eq!(command(&c, &img)?, ["/bin/sh", "x"]);
        let empty = image(&[], &[]);
        assert!(matches!(
            command(&ContainerConfig::default(), &empty),
            Err(Error::InvalidArgument(_))
        ));
        Ok(())
    }

    #[test]
    fn cri_environment_overrides_the_image() {
        let c = ContainerConfig {
            envs: vec![KeyValue {
                key: "A".into(),
                value: "pod".into(),
            }],
            ..Default::default()
        };
        assert_eq!(environment(&c, &image(&[], &[])), ["PATH=/bin", "A=pod"]);
    }

    #[test]
    fn capabilities_start_from_containerds_set() -> Result<()> {
        let mut security = LinuxContainerSecurityContext::default();
        let caps = capabilities(&security, false)?;
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(!caps.contains(&Capability::SysAdmin));
        security.capabilities = Some(CriCapability {
            add_capabilities: vec!["SYS_ADMIN".into()],
            drop_capabilities: vec!["CAP_NET_RAW".into()],
            ..Default::default()
        });
        let caps = capabilities(&security, false)?;
        assert!(caps.contains(&Capability::SysAdmin) && !caps.contains(&Capability::NetRaw));
        security.capabilities = Some(CriCapability {
            add_capabilities: vec!["NOT_A_CAP".into()],
            ..Default::default()
        });
        assert!(matches!(
            capabilities(&security, false),
            Err(Error::InvalidArgument(_))
        ));
        Ok(())
    }
}
