//! Containers: the record kept on disk under `<root>/containers/<id>/`
//! (with the OCI bundle, the overlay snapshot and the monitor's
//! `exit.json`), and what their state is.

mod seccomp;
pub mod spec;
mod user;

use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, ContainerState};
use serde::{Deserialize, Serialize};

use crate::monitor::Exit;
use crate::process::ProcessId;
use crate::state;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// The image id (`sha256:...`) and the name it was asked for by.
    pub image_id: String,
    pub image_name: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    /// The signal StopContainer sends first (the image's `StopSignal`).
    pub stop_signal: String,
    pub log_path: Option<PathBuf>,
    pub cgroup: String,
    pub monitor: Option<ProcessId>,
    pub init_pid: Option<i32>,
    /// Set once read from the monitor's `exit.json`.
    pub exit: Option<Exit>,
    /// Why the container could not be created (its executable is missing,
    /// say). As with containerd, which makes the OCI container only at
    /// StartContainer, this is StartContainer's failure: CreateContainer
    /// succeeds, StartContainer fails and the container exits with 128.
    #[serde(default)]
    pub start_error: Option<String>,
}

impl Container {
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join("containers").join(id)
    }

    pub fn exit_file(dir: &Path) -> PathBuf {
        dir.join("exit.json")
    }

    /// Picks up the monitor's exit record, or notices a monitor that died
    /// without one. Returns whether anything changed.
    pub fn refresh(&mut self, dir: &Path) -> bool {
        if self.exit.is_some() {
            return false;
        }
        // Read the file before checking the monitor: it writes, then exits.
        if let Ok(Some(exit)) = state::read_json::<Exit>(&Container::exit_file(dir)) {
            self.exit = Some(exit);
            return true;
        }
        match self.monitor {
            Some(monitor) if !monitor.is_alive() => {
                if let Ok(Some(exit)) = state::read_json::<Exit>(&Container::exit_file(dir)) {
                    self.exit = Some(exit);
                } else {
                    self.exit = Some(Exit {
                        code: 255,
                        oom_killed: false,
                        finished_at: state::now_nanos(),
                    });
                }
                true
            }
            _ => false,
        }
    }

    pub fn state(&self) -> ContainerState {
        match (&self.exit, self.started_at, self.monitor) {
            (Some(_), _, _) => ContainerState::ContainerExited,
            (None, Some(_), Some(_)) => ContainerState::ContainerRunning,
            (None, None, Some(_)) => ContainerState::ContainerCreated,
            (None, None, None) if self.start_error.is_some() => ContainerState::ContainerCreated,
            _ => ContainerState::ContainerUnknown,
        }
    }

    /// containerd's reasons: StartError, Completed, Error, OOMKilled.
    pub fn reason(&self) -> &'static str {
        match &self.exit {
            Some(_) if self.start_error.is_some() => "StartError",
            Some(e) if e.oom_killed => "OOMKilled",
            Some(e) if e.code == 0 => "Completed",
            Some(_) => "Error",
            None => "",
        }
    }

    /// Why it exited, when its reason says no more (a failed start).
    pub fn message(&self) -> &str {
        match (&self.exit, &self.start_error) {
            (Some(_), Some(error)) => error,
            _ => "",
        }
    }

    /// StartContainer of a container that could not be created: it exits
    /// as containerd's do (128, StartError, the error as the message).
    pub fn fail_start(&mut self) {
        self.exit = Some(Exit {
            code: START_ERROR_EXIT_CODE,
            oom_killed: false,
            finished_at: state::now_nanos(),
        });
    }
}

/// containerd's exit code for a container that failed to start.
const START_ERROR_EXIT_CODE: i32 = 128;
