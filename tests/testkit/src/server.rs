//! A `paddock server --disable-agent` in a temporary data directory on a free
//! loopback port, ready to serve when `start` returns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::Guard;
use crate::wait;

/// A running server, killed when dropped. Its data directory outlives it
/// (see `data_dir`) so a test can start it again.
pub struct Server {
    guard: Option<Guard>,
    data: tempfile::TempDir,
    port: u16,
    binary: PathBuf,
    extra: Vec<String>,
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts `binary server` with `extra` flags and waits until it serves.
    pub fn start(binary: &Path, extra: &[&str]) -> Result<Server> {
        let mut server = Server {
            guard: None,
            data: tempfile::tempdir().context("making a data directory")?,
            port: free_port()?,
            binary: binary.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.restart()?;
        Ok(server)
    }

    /// Starts the server again on the same data directory and port (after
    /// `kill9` or `stop`), with the flags it was first started with.
    pub fn restart(&mut self) -> Result<()> {
        self.restart_on(self.port)
    }

    /// As `restart`, listening on `port` instead.
    pub fn restart_on(&mut self, port: u16) -> Result<()> {
        if self.guard.is_some() {
            bail!("the server is still running");
        }
        let log = std::fs::File::create(self.data.path().join(format!("server-{port}.log")))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .args(["--https-listen-port", &port.to_string()])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.guard = Some(Guard::spawn("paddock server", cmd)?);
        // The kubeconfig written by a previous run names the old port.
        let _ = std::fs::remove_file(self.kubeconfig());
        wait::until(
            "the server to serve",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                if let Some(guard) = self.guard.as_mut()
                    && !guard.is_running()
                {
                    bail!("the server exited: {}", self.log());
                }
                if !self.kubeconfig().exists() {
                    return Ok(None);
                }
                let out = self.curl_port(port, &["/readyz"])?;
                Ok((out.status.success() && out.stdout == b"ok").then_some(()))
            },
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("kubeconfig.yaml")
    }

    /// The server's logs so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.data.path()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".log") {
                    all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
            }
        }
        all
    }

    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.data.path().join("server/tls").join(name)
    }

    /// `curl` with the admin client certificate; `args` end with the path.
    pub fn curl(&self, args: &[&str]) -> Result<Output> {
        self.curl_port(self.port, args)
    }

    fn curl_port(&self, port: u16, args: &[&str]) -> Result<Output> {
        let (cert, key) = (
            self.tls_file("client-admin.crt"),
            self.tls_file("client-admin.key"),
        );
        self.curl_as(port, Some((&cert, &key)), args)
    }

    /// `curl` without credentials.
    pub fn curl_anonymous(&self, args: &[&str]) -> Result<Output> {
        self.curl_as(self.port, None, args)
    }

    /// `curl` with the given client certificate and key files.
    pub fn curl_with(&self, cert: &Path, key: &Path, args: &[&str]) -> Result<Output> {
        self.curl_as(self.port, Some((cert, key)), args)
    }

    fn curl_as(
        &self,
        port: u16,
        identity: Option<(&Path, &Path)>,
        args: &[&str],
    ) -> Result<Output> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"])
            .arg(self.tls_file("ca.crt"));
        if let Some((cert, key)) = identity {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let (path, flags) = args.split_last().context("curl needs a path")?;
        cmd.args(flags)
            .arg(format!("https://127.0.0.1:{port}{path}"));
        cmd.output().context("running curl")
    }

    /// SIGKILL, as a crash; `restart` brings it back.
    pub fn kill9(&mut self) -> Result<()> {
        match self.guard.take() {
            Some(guard) => guard.kill9(),
            None => Ok(()),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Result<()> {
        match self.guard.take() {
            Some(guard) => guard.stop(Duration::from_secs(10)),
            None => Ok(()),
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.guard.as_ref().map(Guard::pid)
    }
}
