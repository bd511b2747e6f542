//! The `switchboard` binary's library: the command line, the `dev` node, and the client
//! tools. Kept as a library so the end-to-end tests start exactly what the binary starts.

pub mod admin;
pub mod cli;
pub mod config;
pub mod dev;
pub mod run;
pub mod telemetry;
pub mod token;
pub mod tools;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A configuration error found after parsing: the binary exits with status 64 for it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
