//! `switchboard gateway` and `switchboard control`: the cluster roles, on NATS.

use std::sync::Arc;

use anyhow::Context;
use switchboard_bus::{Bus, Deliver, NatsBus, NatsConfig, NoDelivery};
use switchboard_control::{Control, ControlConfig};
use switchboard_gateway::Gateway;
use tokio::net::TcpListener;

use crate::UsageError;
use crate::cli::{ControlArgs, GatewayCmdArgs, NatsArgs};

/// The NATS settings, checked before any connection attempt (a bad one exits 64).
fn nats_config(args: &NatsArgs, name: &str) -> Result<NatsConfig, UsageError> {
    let mut config = NatsConfig::new(args.urls.clone(), name);
    config.prefix = args.subject_prefix.clone();
    config.connect_timeout = args.nats_connect_timeout;
    config.ping_interval = args.nats_ping_interval;
    config.max_missed_pongs = args.nats_max_missed_pongs;
    config.tls = args.security.tls();
    config.auth = args.security.auth()?;
    config.validate().map_err(|e| match e {
        switchboard_bus::BusError::Invalid(why) => UsageError(why),
        e => UsageError(e.to_string()),
    })?;
    switchboard_bus::subjects::Subjects::new(&config.prefix).map_err(|e| UsageError(e.to_string()))?;
    Ok(config)
}

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
pub async fn gateway(args: GatewayCmdArgs) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    switchboard_gateway::metrics::describe();
    let mut config = args.gateway.config(args.listen);
    config.tls = args.tls.files();
    config.validate().map_err(UsageError)?;
    config.serve_page = args.page;
    let nats = nats_config(&args.nats, &config.node_id)?;
    let gateway = Gateway::new(config.clone(), Some(prometheus), |deliver| async move {
        Ok::<_, anyhow::Error>(Arc::new(connect_nats(nats, deliver).await?) as Arc<dyn Bus>)
    })
    .await?;
    let listener = gateway.bind().await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (http, ws) = if config.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    println!(
        "switchboard gateway {} listening on {http}://{addr} (websocket {ws}://{addr}/ws), nats {}",
        config.node_id,
        args.nats.urls.join(",")
    );
    let serving = gateway.clone();
    let server = tokio::spawn(async move { serving.serve(listener).await });
    crate::shutdown_signal().await;
    println!("draining…");
    gateway.drain().await;
    server.abort();
    Ok(())
}

/// Runs a control replica until SIGINT/SIGTERM.
pub async fn control(args: ControlArgs) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    switchboard_control::metrics::describe();
    let replica_id = args.replica_id.clone().unwrap_or_else(|| format!("c{}", fastrand_suffix()));
    let mut config = ControlConfig {
        replica_id: replica_id.clone(),
        grpc_addr: args.advertise_addr.clone().unwrap_or_else(|| args.grpc_listen.to_string()),
        gateway_lease: args.gateway_lease,
        replica_lease: args.replica_lease,
        query_timeout: args.query_timeout,
        tls: args.tls.files(),
        api_keys: args.auth.keys.keys(),
        reflection: !args.auth.no_reflection,
        ..ControlConfig::default()
    };
    // Every setting is checked before any connection attempt.
    config.validate().map_err(|e| UsageError(e.to_string()))?;
    let nats = nats_config(&args.nats, &replica_id)?;
    if !config.is_authenticated() {
        if !args.auth.allow_unauthenticated_api {
            return Err(UsageError(
                "the gRPC API needs API keys (--api-keys, --api-keys-file) or mutual TLS (--tls-client-ca); \
                 --allow-unauthenticated-api serves it open"
                    .into(),
            )
            .into());
        }
        eprintln!(
            "WARNING: the gRPC API on {} is open: anyone who reaches it may publish, send and disconnect \
             (--allow-unauthenticated-api)",
            args.grpc_listen
        );
    }
    // NATS first: the gRPC port opens only once the API can answer.
    let bus: Arc<dyn Bus> = Arc::new(connect_nats(nats, Arc::new(NoDelivery)).await?);
    let listener =
        TcpListener::bind(args.grpc_listen).await.with_context(|| format!("cannot listen on {}", args.grpc_listen))?;
    let addr = listener.local_addr()?;
    if args.advertise_addr.is_none() {
        config.grpc_addr = addr.to_string();
    }
    let control = match Control::start(config, bus).await {
        Ok(c) => c,
        Err(e @ switchboard_control::StartError::Config(_)) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    if let Some(addr) = args.metrics_listen {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        println!("switchboard control {replica_id} serving metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(crate::admin::serve(listener, prometheus, {
            let control = control.clone();
            move || control.is_ready()
        }));
    }
    let scheme = if args.tls.files().is_some() { "https" } else { "http" };
    println!("switchboard control {replica_id} serving gRPC on {scheme}://{addr}, nats {}", args.nats.urls.join(","));
    control.serve(listener, crate::shutdown_signal()).await?;
    control.stop().await;
    Ok(())
}

fn fastrand_suffix() -> String {
    switchboard_gateway::config::random_node_id()[1..].to_owned()
}
