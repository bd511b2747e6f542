//! `switchboard`: one binary for the gateway, control, dev mode and client tools.

use clap::Parser;
use switchboard::cli::{Cli, Command};
use switchboard::{dev, tools};

/// Exit status for a usage or configuration error (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[tokio::main]
async fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Dev(args) => run_dev(args).await,
        Command::Sub(args) => tools::sub(args).await,
        Command::Pub(args) => tools::publish(args).await,
    };
    if let Err(e) = result {
        eprintln!("switchboard: {e:#}");
        std::process::exit(1);
    }
}

async fn run_dev(args: switchboard::cli::DevArgs) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    switchboard_gateway::metrics::describe();
    let mut gateway = args.gateway.config(args.listen);
    gateway.serve_page = !args.no_page;
    let node = dev::Dev::start(dev::DevConfig { gateway, grpc_listen: args.grpc_listen }, Some(prometheus)).await?;
    println!("switchboard dev is running (in-process bus, no NATS)");
    println!("  browser:   http://{}/", node.http);
    println!("  websocket: ws://{}/ws", node.http);
    println!("  grpc:      http://{}", node.grpc);
    println!("  try:       switchboard sub chat:lobby   and   switchboard pub chat:lobby '{{\"text\":\"hi\"}}'");
    shutdown_signal().await;
    println!("draining…");
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
