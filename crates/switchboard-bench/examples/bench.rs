//! `switchboard bench` without the rest of the binary, for working on the generator alone:
//! `cargo run -p switchboard-bench --example bench -- broadcast --subscribers 100`.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: switchboard_bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = switchboard_bench::run(cli.bench).await?;
    print!("{}", report.table());
    Ok(())
}
