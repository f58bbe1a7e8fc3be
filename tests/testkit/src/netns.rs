//! Network namespaces standing in for machines. Commands enter them with
//! `nsenter --net=`, not `ip netns exec`, which remounts /sys and hides the
//! cgroup mounts.

use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace with its loopback up.
    pub fn create(name: &str) -> Result<NetNs> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = NetNs {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace; fails on a non-zero exit.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        run(self.command(program).args(args))
    }

    /// `ip args` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Adds address `cidr` (e.g. `192.168.56.10/24`) to `dev` and sets it up.
    pub fn addr_up(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev])?;
        self.ip(&["link", "set", dev, "up"])?;
        Ok(())
    }

    /// A veth pair: `here` in this namespace, `there` in `peer`, both down.
    pub fn veth(&self, here: &str, peer: &NetNs, there: &str) -> Result<()> {
        self.ip(&[
            "link", "add", here, "type", "veth", "peer", "name", there, "netns", &peer.name,
        ])?;
        Ok(())
    }

    /// A bridge `name` in this namespace with `cidr` on it, up.
    pub fn bridge(&self, name: &str, cidr: &str) -> Result<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.addr_up(name, cidr)
    }

    /// Enslaves `dev` to bridge `bridge` and sets it up.
    pub fn attach(&self, dev: &str, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "master", bridge, "up"])?;
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `cmd`, failing with its stderr on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
