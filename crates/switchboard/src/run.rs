//! `switchboard gateway` and `switchboard control`: the cluster roles, on NATS.

use std::sync::Arc;

use anyhow::Context;
use switchboard_bus::{Bus, Deliver, NatsBus, NatsConfig, NoDelivery};
use switchboard_control::Control;
use switchboard_gateway::Gateway;
use tokio::net::TcpListener;

use crate::UsageError;
use crate::cli::{ControlArgs, GatewayCmdArgs};
use crate::config::{ControlSettings, Explicit};

/// Connects to NATS, or fails with one line naming the servers and why.
async fn connect_nats(config: NatsConfig, deliver: Arc<dyn Deliver>) -> anyhow::Result<NatsBus> {
    tracing::info!(servers = %config.urls.join(","), "connecting to nats");
    NatsBus::connect(config, deliver).await.map_err(|e| {
        // The hint is for a server that is not there, not for one that refused us.
        let text = e.to_string();
        if text.contains("refused the credentials") || text.contains("tls failed") {
            anyhow::anyhow!("{text}")
        } else {
            anyhow::anyhow!("{text} (is nats-server running there? `make deps` installs it)")
        }
    })
}

/// Runs a gateway until SIGINT/SIGTERM, then drains it.
pub async fn gateway(args: GatewayCmdArgs, explicit: &Explicit) -> anyhow::Result<()> {
    let (mut config, nats) = crate::config::gateway(&args, explicit)?;
    let admin = crate::config::gateway_admin(&args, explicit)?;
    // With an admin port, /metrics is served there only: the client port may face the internet.
    config.metrics_on_listen = admin.is_none();
    let prometheus = crate::telemetry::install_metrics()?;
    switchboard_gateway::metrics::describe();
    switchboard_bus::metrics::describe();
    if config.auth.allow_anonymous {
        tracing::warn!("anonymous sessions are allowed (--allow-anonymous)");
    }
    let servers = nats.urls.join(",");
    let gateway = Gateway::new(config.clone(), Some(prometheus), |deliver| async move {
        Ok::<_, anyhow::Error>(Arc::new(connect_nats(nats, deliver).await?) as Arc<dyn Bus>)
    })
    .await?;
    let listener = gateway.bind().await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    println!(
        "switchboard gateway {} listening on {http}://{addr} (websocket {ws}://{addr}/ws), nats {}",
        config.node_id, servers
    );
    let admin = match admin {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            println!(
                "switchboard gateway {} serving metrics on http://{}/metrics",
                config.node_id,
                listener.local_addr()?
            );
            let serving = gateway.clone();
            Some(tokio::spawn(async move { serving.serve_admin(listener).await }))
        }
        None => None,
    };
    let serving = gateway.clone();
    let server = tokio::spawn(async move { serving.serve(listener).await });
    crate::shutdown_signal().await;
    println!("draining…");
    gateway.drain().await;
    server.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(())
}

/// Runs a control replica until SIGINT/SIGTERM.
pub async fn control(args: ControlArgs, explicit: &Explicit) -> anyhow::Result<()> {
    // Every setting is checked before any connection attempt.
    let ControlSettings { mut config, nats, grpc_listen, advertise_addr, metrics_listen } =
        crate::config::control(&args, explicit)?;
    let prometheus = crate::telemetry::install_metrics()?;
    switchboard_control::metrics::describe();
    switchboard_bus::metrics::describe();
    let servers = nats.urls.join(",");
    if !config.is_authenticated() {
        eprintln!(
            "WARNING: the gRPC API on {grpc_listen} is open: anyone who reaches it may publish, send and disconnect \
             (--allow-unauthenticated-api)"
        );
    }
    // NATS first: the gRPC port opens only once the API can answer.
    let bus: Arc<dyn Bus> = Arc::new(connect_nats(nats, Arc::new(NoDelivery)).await?);
    let listener = TcpListener::bind(grpc_listen).await.with_context(|| format!("cannot listen on {grpc_listen}"))?;
    let addr = listener.local_addr()?;
    if advertise_addr.is_none() {
        config.grpc_addr = addr.to_string();
    }
    let replica_id = config.replica_id.clone();
    let config_tls = config.tls.is_some();
    let control = match Control::start(config, bus).await {
        Ok(c) => c,
        Err(e @ switchboard_control::StartError::Config(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    if let Some(addr) = metrics_listen {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        println!("switchboard control {replica_id} serving metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(crate::admin::serve(listener, prometheus, {
            let control = control.clone();
            move || control.readiness()
        }));
    }
    let scheme = if config_tls { "https" } else { "http" };
    println!("switchboard control {replica_id} serving gRPC on {scheme}://{addr}, nats {servers}");
    control.serve(listener, crate::shutdown_signal()).await?;
    control.stop().await;
    Ok(())
}
