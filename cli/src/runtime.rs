//! `paddock runtime`.

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(args: Args) -> Result<()> {
    let Args {} = args;
    bail!("paddock runtime is not built yet")
}
