//! `switchboard dev`: gateway + control API + the in-process bus in one process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_bus::{Bus, MemoryBroker, Namespaces, NoDelivery};
use switchboard_control::{ApiKeys, Control, ControlConfig};
use switchboard_gateway::{Gateway, GatewayConfig};
use switchboard_tls::TlsFiles;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a dev node needs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    pub gateway: GatewayConfig,
    pub grpc_listen: SocketAddr,
    /// Keys the gRPC API asks for; none (and no client CA): open.
    pub api_keys: ApiKeys,
    /// TLS on the gRPC listener (`[control.tls]`; with `client_ca`, mutual TLS).
    pub api_tls: Option<TlsFiles>,
    /// Serve gRPC server reflection.
    pub reflection: bool,
    /// What is kept per channel namespace (history).
    pub namespaces: Namespaces,
}

/// A running dev node.
pub struct Dev {
    /// Where HTTP and WebSocket are served.
    pub http: SocketAddr,
    /// Where the gRPC API is served.
    pub grpc: SocketAddr,
    pub gateway: Gateway,
    pub control: Control,
    stop_grpc: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Dev {
    /// Binds both listeners and starts serving.
    pub async fn start(config: DevConfig, prometheus: Option<PrometheusHandle>) -> anyhow::Result<Dev> {
        let broker = MemoryBroker::with_namespaces(config.namespaces.clone());
        let gateway_broker = broker.clone();
        let gateway = Gateway::new(config.gateway.clone(), prometheus, |deliver| async move {
            Ok::<_, anyhow::Error>(Arc::new(gateway_broker.connect(deliver)) as Arc<dyn Bus>)
        })
        .await?;
        let listener = gateway.bind().await.with_context(|| format!("cannot listen on {}", config.gateway.listen))?;
        let grpc_listener = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.grpc_listen))?;
        let (http, grpc) = (listener.local_addr()?, grpc_listener.local_addr()?);
        let control_bus: Arc<dyn Bus> = Arc::new(broker.connect(Arc::new(NoDelivery)));
        let control_config = ControlConfig {
            replica_id: "dev".into(),
            grpc_addr: grpc.to_string(),
            api_keys: config.api_keys.clone(),
            tls: config.api_tls.clone(),
            reflection: config.reflection,
            ..ControlConfig::default()
        };
        let control = Control::start(control_config, control_bus).await?;
        let (stop_grpc, stopped) = oneshot::channel::<()>();
        let serving = gateway.clone();
        let grpc_serving = control.clone();
        let tasks = vec![
            tokio::spawn(async move { serving.serve(listener).await }),
            tokio::spawn(async move {
                let shutdown = async {
                    let _ = stopped.await;
                };
                if let Err(e) = grpc_serving.serve(grpc_listener, shutdown).await {
                    tracing::error!(error = %e, "grpc server failed");
                }
            }),
        ];
        Ok(Dev { http, grpc, gateway, control, stop_grpc: Some(stop_grpc), tasks })
    }

    /// Drains the gateway (sessions are asked to reconnect over the drain window), then
    /// stops the gRPC API.
    pub async fn shutdown(mut self) {
        self.gateway.drain().await;
        if let Some(stop) = self.stop_grpc.take() {
            let _ = stop.send(());
        }
        self.control.stop().await;
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `switchboard dev`: runs until SIGINT/SIGTERM, then drains.
pub async fn run(args: crate::cli::DevArgs, explicit: &crate::config::Explicit) -> anyhow::Result<()> {
    // Every check `config check dev` makes, API keys included, happens here.
    let config = crate::config::dev(&args, explicit)?;
    let prometheus = crate::telemetry::install_metrics()?;
    switchboard_gateway::metrics::describe();
    switchboard_bus::metrics::describe();
    switchboard_control::metrics::describe();
    if config.gateway.auth.allow_anonymous {
        tracing::warn!(
            "anonymous sessions are allowed: anyone who reaches this port may connect \
             (fine for trying it; configure [auth] keys before exposing it)"
        );
    }
    let (http, ws) = if config.gateway.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    let grpc_scheme = if config.api_tls.is_some() { "https" } else { "http" };
    let open = config.api_keys.is_empty() && config.api_tls.as_ref().is_none_or(|t| t.client_ca.is_none());
    let keyed = !config.api_keys.is_empty();
    let (page, demo_tokens) = (config.gateway.serve_page, config.gateway.demo_tokens.is_some());
    let node = Dev::start(config, Some(prometheus)).await?;
    if open {
        eprintln!(
            "WARNING: the gRPC API takes calls without an API key (fine on a laptop; --api-keys or control.api_keys \
             to require one)"
        );
    }
    println!("switchboard dev is running (in-process bus, no NATS)");
    println!("  browser:   {http}://{}/", node.http);
    if page {
        println!("  chat:      {http}://{}/chat/", node.http);
    }
    if demo_tokens {
        println!("  tokens:    {http}://{}/demo/token?user=NAME (--demo-tokens: anyone may be anyone)", node.http);
    }
    println!("  websocket: {ws}://{}/ws", node.http);
    println!("  grpc:      {grpc_scheme}://{}", node.grpc);
    // Commands that work as printed: this binary's path, and the addresses unless default.
    let me = command_name();
    let default = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let url = if node.http == default(8080) && ws == "ws" {
        String::new()
    } else {
        format!(" --url {ws}://{}/ws", node.http)
    };
    let grpc = match (node.grpc == default(50051), grpc_scheme) {
        (true, "http") => String::new(),
        (false, "http") => format!(" --grpc {}", node.grpc),
        (_, scheme) => format!(" --grpc {scheme}://{}", node.grpc),
    };
    let key = if keyed { " --api-key KEY" } else { "" };
    println!("  subscribe: {me} sub{url} chat:lobby");
    println!("  publish:   {me} pub{grpc}{key} chat:lobby '{{\"text\":\"hi\"}}'");
    if ws == "wss" || grpc_scheme == "https" {
        println!("  (with --ca FILE when the certificate's CA is not among the system's roots)");
    }
    crate::shutdown_signal().await;
    println!("draining…");
    node.shutdown().await;
    Ok(())
}

/// How to run this very binary from the current directory, for the banner: `switchboard`
/// when it is the one on `PATH`, else its path, relative when under the current directory
/// (`target/release/switchboard`).
fn command_name() -> String {
    let Some(exe) = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok()) else {
        return "switchboard".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|dirs| {
        std::env::split_paths(&dirs).any(|d| d.join("switchboard").canonicalize().is_ok_and(|p| p == exe))
    });
    if on_path {
        return "switchboard".into();
    }
    let cwd = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
    let shown = cwd.and_then(|d| exe.strip_prefix(d).ok().map(|p| p.to_path_buf())).unwrap_or(exe);
    let shown = shown.display().to_string();
    if shown.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b)) {
        shown
    } else {
        format!("'{}'", shown.replace('\'', r"'\''"))
    }
}
