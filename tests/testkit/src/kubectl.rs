//! Stock kubectl against a test server: 1.32 (on PATH) and 1.20.2 (unpacked
//! by `scripts/deps.sh test` under `target/tools/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{Context, Result, bail};

#[derive(Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
    pub version: &'static str,
}

/// Where `scripts/deps.sh test` unpacks kubectl 1.20.2.
pub fn kubectl_1_20_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/kubectl-1.20/usr/bin/kubectl")
}

impl Kubectl {
    /// The kubectl on PATH (1.32).
    pub fn v1_32(kubeconfig: &Path, cache_dir: &Path) -> Kubectl {
        Kubectl::new("kubectl".into(), kubeconfig, cache_dir, "1.32")
    }

    /// kubectl 1.20.2; fails if `scripts/deps.sh test` has not unpacked it.
    pub fn v1_20(kubeconfig: &Path, cache_dir: &Path) -> Result<Kubectl> {
        let program = kubectl_1_20_path();
        if !program.exists() {
            bail!("{} is missing: run scripts/deps.sh test", program.display());
        }
        Ok(Kubectl::new(program, kubeconfig, cache_dir, "1.20"))
    }

    fn new(
        program: PathBuf,
        kubeconfig: &Path,
        cache_dir: &Path,
        version: &'static str,
    ) -> Kubectl {
        Kubectl {
            program,
            kubeconfig: kubeconfig.to_path_buf(),
            cache_dir: cache_dir.join(version),
            version,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .output()
            .with_context(|| format!("running kubectl {} {args:?}", self.version))
    }

    /// Runs kubectl and returns its stdout; fails with its stderr on a
    /// non-zero exit.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} {args:?} failed ({}): {}{}",
                self.version,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs kubectl with `stdin` as its input (for `-f -`).
    pub fn run_with_input(&self, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} {args:?} failed: {}",
                self.version,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts kubectl in the background with its stdout and stderr piped
    /// (for `--watch`).
    pub fn spawn(&self, args: &[&str]) -> Result<Child> {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kubectl")
    }
}
