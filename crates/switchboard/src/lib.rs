//! The `switchboard` binary's library: the command line, the `dev` node, and the client
//! tools. Kept as a library so the end-to-end tests start exactly what the binary starts.

pub mod cli;
pub mod dev;
pub mod duration;
pub mod run;
pub mod tools;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
