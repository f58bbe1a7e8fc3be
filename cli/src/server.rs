//! `paddock server`.

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(args: Args) -> Result<()> {
    let Args {} = args;
    bail!("paddock server is not built yet")
}
