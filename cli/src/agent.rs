//! `paddock agent`.

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(args: Args) -> Result<()> {
    let Args {} = args;
    bail!("paddock agent is not built yet")
}
