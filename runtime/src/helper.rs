//! Helper processes: the embedding binary re-executed with a request in
//! `PADDOCK_RUNTIME_HELPER`. A fresh, single-threaded process is where
//! libcontainer may fork safely, and a container monitor must outlive the
//! runtime. Binaries that embed the runtime call
//! [`run_helper_if_requested`] first thing in `main`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{exec, monitor};

const ENV: &str = "PADDOCK_RUNTIME_HELPER";

#[derive(Serialize, Deserialize)]
pub enum Request {
    Monitor(monitor::Request),
    Exec(exec::Request),
}

/// If this process was started as a runtime helper, runs it and exits;
/// otherwise returns at once. Call it before starting any thread.
pub fn run_helper_if_requested() {
    let Some(raw) = std::env::var_os(ENV) else {
        return;
    };
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe { std::env::remove_var(ENV) };
    let code = match serde_json::from_slice::<Request>(raw.as_encoded_bytes()) {
        Ok(Request::Monitor(request)) => monitor::run(request),
        Ok(Request::Exec(request)) => exec::run(request),
        Err(e) => {
            eprintln!("paddock runtime helper: bad request: {e}");
            2
        }
    };
    std::process::exit(code)
}

/// A command that runs `request` in a helper process of `exe`.
pub fn command(exe: &Path, request: &Request) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.env(ENV, serde_json::to_string(request)?)
        .stdin(std::process::Stdio::null());
    Ok(cmd)
}
