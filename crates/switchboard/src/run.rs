//! `switchboard gateway` and `switchboard control`: the cluster roles, on NATS.

use std::sync::Arc;

use anyhow::Context;
use switchboard_bus::{Bus, NatsBus, NatsConfig, NoDelivery};
use switchboard_control::{Control, ControlConfig};
use switchboard_gateway::Gateway;
use tokio::net::TcpListener;

use crate::cli::{ControlArgs, GatewayCmdArgs, NatsArgs};

fn nats_config(args: &NatsArgs, name: &str) -> NatsConfig {
    let mut config = NatsConfig::new(args.urls.clone(), name);
    config.prefix = args.subject_prefix.clone();
    config
}

/// Runs a gateway until SIGINT/SIGTERM, then drains it.
pub async fn gateway(args: GatewayCmdArgs) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    switchboard_gateway::metrics::describe();
    let mut config = args.gateway.config(args.listen);
    config.serve_page = args.page;
    let nats = nats_config(&args.nats, &config.node_id);
    let gateway = Gateway::new(config.clone(), Some(prometheus), |deliver| async move {
        Ok::<_, anyhow::Error>(Arc::new(NatsBus::connect(nats, deliver).await?) as Arc<dyn Bus>)
    })
    .await?;
    let listener = gateway.bind().await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "switchboard gateway {} listening on http://{addr} (websocket ws://{addr}/ws), nats {}",
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
    let listener =
        TcpListener::bind(args.grpc_listen).await.with_context(|| format!("cannot listen on {}", args.grpc_listen))?;
    let addr = listener.local_addr()?;
    let bus: Arc<dyn Bus> =
        Arc::new(NatsBus::connect(nats_config(&args.nats, &replica_id), Arc::new(NoDelivery)).await?);
    let config = ControlConfig {
        replica_id: replica_id.clone(),
        grpc_addr: args.advertise_addr.clone().unwrap_or_else(|| addr.to_string()),
        gateway_lease: args.gateway_lease,
        replica_lease: args.replica_lease,
        query_timeout: args.query_timeout,
        ..ControlConfig::default()
    };
    let control = match Control::start(config, bus).await {
        Ok(c) => c,
        Err(e @ switchboard_control::StartError::Config(_)) => return Err(crate::UsageError(e.to_string()).into()),
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
    println!("switchboard control {replica_id} serving gRPC on http://{addr}, nats {}", args.nats.urls.join(","));
    control.serve(listener, crate::shutdown_signal()).await?;
    control.stop().await;
    Ok(())
}

fn fastrand_suffix() -> String {
    switchboard_gateway::config::random_node_id()[1..].to_owned()
}
