//! `paddock-lab`: the end-to-end tests' 4-node lab, left running for a user
//! to try by hand (`make lab-up`, `make lab-down`). Run as root.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use paddock_testkit::lab::{self, Daemon, Lab, Options};

/// The lab's id: its namespaces are `paddock-lab-client`, `paddock-lab-m-k8s`, ...
const ID: &str = "paddock-lab";

#[derive(Parser)]
#[command(about = "The Vagrant lab's shape in network namespaces of this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts the master and the workers, waits until they are Ready, and
    /// leaves them running.
    Up {
        /// The paddock binary the nodes run.
        #[arg(long, default_value = "target/release/paddock")]
        paddock: PathBuf,
        /// How many workers beside the master.
        #[arg(long, default_value_t = 3)]
        workers: usize,
    },
    /// Tears the lab down, and whatever a killed test run left behind.
    Down,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Up { paddock, workers } => up(paddock, workers),
        Command::Down => {
            let swept = lab::sweep(true);
            if swept.is_empty() {
                println!("no lab to tear down");
            }
            for id in swept {
                println!("tore down lab {id}");
            }
            Ok(())
        }
    }
}

fn up(paddock: PathBuf, workers: usize) -> Result<()> {
    if lab::base_dir().join(ID).exists() {
        bail!("the lab is up already; `make lab-down` removes it");
    }
    if !paddock.exists() {
        bail!("{} is missing: build it first", paddock.display());
    }
    let options = Options {
        workers,
        ..Options::from_env()?
    };
    let started = Instant::now();
    let mut lab = Lab::prepare_as(ID, &std::fs::canonicalize(&paddock)?, options)?;
    lab.start_all()?;
    println!("The lab is up, after {} s:", started.elapsed().as_secs());
    for node in &lab.nodes {
        let runs: Vec<&str> = Daemon::ALL
            .into_iter()
            .filter(|d| node.runs(*d))
            .map(Daemon::name)
            .collect();
        println!(
            "  {:<7} {:<14} {:<32} logs in {}",
            node.name,
            node.ip,
            runs.join(", "),
            node.dir().display()
        );
    }
    println!(
        "\nYour laptop is the network namespace {client} ({ip}); the registry \
         there at {registry} mirrors docker.io:\n\n  \
         nsenter --net=/run/netns/{client} bash\n  \
         export KUBECONFIG={kubeconfig}\n  \
         kubectl get nodes -o wide\n  \
         kubectl run nginx --image=nginx\n\n\
         `make lab-down` removes it all.",
        client = lab.client.name(),
        ip = lab::CLIENT_IP,
        registry = lab::REGISTRY,
        kubeconfig = lab.kubeconfig().display(),
    );
    lab.detach()
}
