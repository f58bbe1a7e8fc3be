//! Running the iptables tools: `iptables-restore`, `iptables-save` and
//! `iptables`, in the flavour (legacy or nft) the host uses.

use std::fmt;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The kernel interface the iptables tools drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// x_tables, through `iptables-legacy*`.
    Legacy,
    /// nf_tables, through `iptables-nft*`.
    Nft,
}

impl Flavor {
    fn tool(self, tool: &str) -> String {
        let flavor = match self {
            Flavor::Legacy => "legacy",
            Flavor::Nft => "nft",
        };
        match tool.strip_prefix("iptables") {
            Some(rest) => format!("iptables-{flavor}{rest}"),
            None => format!("{tool}-{flavor}"),
        }
    }

    /// Picks the flavour the host already uses, as upstream's
    /// iptables-wrapper does: the one holding the kubelet's hint chains, else
    /// the one holding more rules, else nft.
    pub fn detect() -> Result<Flavor> {
        let nft = save_all(Flavor::Nft);
        let legacy = save_all(Flavor::Legacy);
        match (nft, legacy) {
            (Err(e), Err(_)) => Err(e.context("neither iptables-nft nor iptables-legacy works")),
            (Ok(_), Err(_)) => Ok(Flavor::Nft),
            (Err(_), Ok(_)) => Ok(Flavor::Legacy),
            (Ok(nft), Ok(legacy)) => match choose(&nft, &legacy) {
                // Nothing to go by: nft, if this kernel can hold nft rules
                // (Debian's UML kernel lists empty tables it cannot fill).
                Flavor::Nft if !has_rules(&nft) && !has_rules(&legacy) && !nft_works() => {
                    Ok(Flavor::Legacy)
                }
                flavor => Ok(flavor),
            },
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Legacy => "legacy",
            Flavor::Nft => "nft",
        })
    }
}

/// Chains the kubelet creates to tell other components which flavour it
/// uses.
const HINT_CHAINS: [&str; 2] = [":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY "];

fn choose(nft: &str, legacy: &str) -> Flavor {
    let hinted = |saved: &str| {
        saved
            .lines()
            .any(|l| HINT_CHAINS.iter().any(|h| l.starts_with(h)))
    };
    if hinted(nft) {
        return Flavor::Nft;
    }
    if hinted(legacy) {
        return Flavor::Legacy;
    }
    if rule_count(legacy) > rule_count(nft) {
        Flavor::Legacy
    } else {
        Flavor::Nft
    }
}

fn rule_count(saved: &str) -> usize {
    saved.lines().filter(|l| l.starts_with("-A ")).count()
}

fn has_rules(saved: &str) -> bool {
    rule_count(saved) > 0
}

/// Whether iptables-nft can create a chain here (and removes it again).
fn nft_works() -> bool {
    const PROBE: &str = "KUBE-PROXY-FLAVOR-PROBE";
    let iptables = Flavor::Nft.tool("iptables");
    let run = |op: &str| {
        Command::new(&iptables)
            .args(["-w", "5", "-t", "mangle", op, PROBE])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let works = run("-N");
    if works {
        run("-X");
    }
    works
}

fn save_all(flavor: Flavor) -> Result<String> {
    output(Command::new(flavor.tool("iptables-save")))
}

fn output(mut cmd: Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed invalid UTF-8"))
}

/// The iptables tools of one flavour.
#[derive(Clone, Debug)]
pub struct Iptables {
    flavor: Flavor,
}

impl Iptables {
    pub fn new(flavor: Flavor) -> Iptables {
        Iptables { flavor }
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `iptables-save -t table`.
    pub fn save(&self, table: &str) -> Result<String> {
        let mut cmd = Command::new(self.flavor.tool("iptables-save"));
        cmd.args(["-t", table]);
        output(cmd)
    }

    /// Runs `input` as one `iptables-restore --noflush` transaction: all of
    /// it or nothing. On failure the error quotes the line iptables rejected.
    pub fn restore(&self, input: &str) -> Result<()> {
        let tool = self.flavor.tool("iptables-restore");
        let mut child = Command::new(&tool)
            .args(["--noflush", "--counters", "-w", "5"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {tool}"))?;
        let mut stdin = child.stdin.take().context("iptables-restore stdin")?;
        let written = stdin.write_all(input.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {tool}"))?;
        if out.status.success() {
            written.with_context(|| format!("writing to {tool}"))?;
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = failed_line(&stderr)
            .and_then(|n| input.lines().nth(n.saturating_sub(1)))
            .map(|l| format!(" (line: {l})"))
            .unwrap_or_default();
        bail!("{tool} failed ({}): {}{line}", out.status, stderr.trim())
    }

    /// Whether `chain` exists in `table`.
    pub fn chain_exists(&self, table: &str, chain: &str) -> Result<bool> {
        let status = Command::new(self.flavor.tool("iptables"))
            .args(["-w", "5", "-t", table, "-S", chain])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", self.flavor.tool("iptables")))?;
        Ok(status.success())
    }
}

/// The line number in iptables-restore's "line N failed" message.
fn failed_line(stderr: &str) -> Option<usize> {
    let rest = stderr.split("line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_debian() {
        assert_eq!(Flavor::Nft.tool("iptables-restore"), "iptables-nft-restore");
        assert_eq!(Flavor::Legacy.tool("iptables-save"), "iptables-legacy-save");
        assert_eq!(Flavor::Legacy.tool("iptables"), "iptables-legacy");
    }

    #[test]
    fn the_hint_chain_wins_over_rule_counts() {
        let legacy = "*nat\n:FOO - [0:0]\n-A FOO -j ACCEPT\n-A FOO -j ACCEPT\nCOMMIT\n";
        let nft = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
        assert_eq!(choose(nft, legacy), Flavor::Nft);
        assert_eq!(choose("", legacy), Flavor::Legacy);
        assert_eq!(choose("", ""), Flavor::Nft);
        let legacy_hint = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";
        assert_eq!(choose("-A X -j ACCEPT\n", legacy_hint), Flavor::Legacy);
    }

    #[test]
    fn finds_the_failed_line() {
        assert_eq!(failed_line("iptables-restore: line 7 failed\n"), Some(7));
        assert_eq!(
            failed_line("iptables-restore v1.8.9 (nf_tables): line 12: RULE_APPEND failed"),
            Some(12)
        );
        assert_eq!(
            failed_line("Another app is currently holding the xtables lock"),
            None
        );
    }
}
