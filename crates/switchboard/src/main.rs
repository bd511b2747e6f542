//! `switchboard`: one binary for the gateway, control, dev mode and client tools.

use clap::Parser;
use switchboard::cli::{Cli, Command};
use switchboard::{dev, run, tools};

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
        // Colour only for a person at a terminal, not in log files (`make run > log 2>&1`).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Gateway(args) => run::gateway(args).await,
        Command::Control(args) => run::control(args).await,
        Command::Sub(args) => tools::sub(args).await,
        Command::Pub(args) => tools::publish(args).await,
        Command::Sessions(args) => tools::sessions(args).await,
        Command::Presence(args) => tools::presence(args).await,
        Command::Send(args) => tools::send(args).await,
        Command::Disconnect(args) => tools::disconnect(args).await,
        Command::Bench(args) => switchboard_bench::run(args).await.map(|report| print!("{}", report.table())),
    };
    if let Err(e) = result {
        eprintln!("switchboard: {e:#}");
        let usage = e.downcast_ref::<switchboard::UsageError>().is_some();
        std::process::exit(if usage { EXIT_USAGE } else { 1 });
    }
}
