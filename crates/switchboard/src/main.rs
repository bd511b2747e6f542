//! `switchboard`: one binary for the gateway, control, dev mode and client tools.

use clap::{CommandFactory, FromArgMatches};
use switchboard::cli::{Cli, Command};
use switchboard::config::Explicit;
use switchboard::{dev, run, token, tools};

/// Exit status for a usage or configuration error (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[tokio::main]
async fn main() {
    let parsed = Cli::command().try_get_matches().and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return;
        }
    };
    let (filter, format) =
        switchboard::config::log_settings(cli.log.as_deref(), cli.log_format, cli.command.config_path());
    switchboard::telemetry::init_logs(&filter, format);
    // Which settings came from a flag or the environment: they win over the config file.
    let explicit = Explicit::from_matches(&matches);
    let result = match cli.command {
        Command::Dev(args) => dev::run(args, &explicit).await,
        Command::Gateway(args) => run::gateway(args, &explicit).await,
        Command::Control(args) => run::control(args, &explicit).await,
        Command::Config(cmd) => switchboard::config::command(cmd, &explicit),
        Command::Token(args) => token::run(args),
        Command::Sub(args) => tools::sub(args).await,
        Command::Pub(args) if args.stream => tools::publish_stream(args).await,
        Command::Pub(args) => tools::publish(args).await,
        Command::History(args) => tools::history(args).await,
        Command::HistoryRemove(args) => tools::history_remove(args).await,
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
