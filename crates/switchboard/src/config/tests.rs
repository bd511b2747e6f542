use clap::{CommandFactory, FromArgMatches};

use super::*;
use crate::cli::{Cli, Command};

/// Parses a command line as the binary does, with the explicit arguments.
fn cli(args: &[&str]) -> (Command, Explicit) {
    let matches = Cli::command().try_get_matches_from(args).unwrap();
    (Cli::from_arg_matches(&matches).unwrap().command, Explicit::from_matches(&matches))
}

fn gateway_summary_for(args: &[&str]) -> Result<serde_json::Value, String> {
    let (Command::Gateway(a), x) = cli(args) else { panic!("not a gateway command") };
    let (mut g, n) = gateway(&a, &x).map_err(|e| e.0)?;
    g.node_id = "fixed".into();
    Ok(serde_json::json!({"gateway": gateway_summary(&g), "nats": nats_summary(&n)}))
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

#[test]
fn the_example_file_parses_to_the_defaults() {
    let example = write(EXAMPLE);
    let path = example.path().to_str().unwrap();
    let base = ["switchboard", "gateway", "--nats", "nats://127.0.0.1:4222", "--allow-anonymous"];
    let with_file: Vec<&str> = base.iter().copied().chain(["--config", path]).collect();
    assert_eq!(gateway_summary_for(&with_file).unwrap(), gateway_summary_for(&base).unwrap());
    let (Command::Control(a), x) =
        cli(&["switchboard", "control", "--nats", "nats://x:4222", "--allow-unauthenticated-api", "--config", path])
    else {
        panic!()
    };
    let from_file = control(&a, &x).unwrap();
    let (Command::Control(a), x) =
        cli(&["switchboard", "control", "--nats", "nats://x:4222", "--allow-unauthenticated-api"])
    else {
        panic!()
    };
    let defaults = control(&a, &x).unwrap();
    assert_eq!(
        (
            from_file.grpc_listen,
            from_file.config.gateway_lease,
            from_file.config.replica_lease,
            from_file.config.query_timeout
        ),
        (
            defaults.grpc_listen,
            defaults.config.gateway_lease,
            defaults.config.replica_lease,
            defaults.config.query_timeout
        )
    );
    assert_eq!(from_file.config.balance, defaults.config.balance);
    assert_eq!(
        (from_file.nats.prefix, from_file.nats.ping_interval, from_file.nats.max_missed_pongs),
        (defaults.nats.prefix, defaults.nats.ping_interval, defaults.nats.max_missed_pongs)
    );
}

/// Every property name of the schema, with the section it is in.
fn schema_keys(schema: &serde_json::Value, out: &mut Vec<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| schema_keys(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| schema_keys(v, out)),
        _ => {}
    }
}

#[test]
fn the_example_file_shows_every_key_of_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(&schema()).unwrap();
    let mut keys = Vec::new();
    schema_keys(&schema, &mut keys);
    assert!(keys.len() > 40, "{keys:?}");
    for key in keys {
        let shown = EXAMPLE.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} ="))
                || l.starts_with(&format!("[{key}]"))
                || (l.starts_with('[') && (l.contains(&format!(".{key}]")) || l.contains(&format!(".{key}."))))
        });
        assert!(shown, "deploy/switchboard.example.toml does not show the key `{key}`");
    }
}

#[test]
fn unknown_keys_and_values_out_of_range_are_refused_naming_the_key() {
    let cases = [
        ("[gateway]\nmax_mesage_size = 1\n", "unknown field `max_mesage_size`"),
        ("[gatway]\n", "unknown field `gatway`"),
        ("[gateway]\nmax_user_id_len = 5000\n", "max_user_id_len must be 1 to 256"),
        ("[gateway]\nmax_header_bytes = 100\n", "max_header_bytes must be at least"),
        ("[gateway]\nping_interval = \"1x\"\n", "unknown unit"),
        ("[gateway]\nlisten = \"nowhere\"\n", "gateway.listen"),
        ("[nats]\nping_interval = \"1ms\"\n", "ping_interval must be at least 100ms"),
        ("[channels.default]\nsubscribe = \"everyone\"\n", "unknown variant `everyone`"),
        ("[[auth.keys]]\nkid = \"k\"\n", "auth.keys[0]: give one key source"),
        ("[[auth.keys]]\nhmac_secret = \"a\"\njwk = \"{}\"\n", "give only one key source"),
        ("[[auth.keys]]\npublic_key_pem = \"nope\"\n", "not an RSA, EC or Ed25519 public key"),
        ("[auth]\nalgorithms = [\"HS999\"]\n", "auth.algorithms"),
        ("[channels.default]\nhistory_size = 100001\n", "channels.default.history_size: 100001 is more than 100000"),
        (
            "[channels.namespaces.chat]\nhistory_size = 5\nhistory_ttl = \"10ms\"\n",
            "history_ttl: 10ms is shorter than 1s",
        ),
        ("[channels.namespaces.chat]\nhistory_ttl = \"1m\"\n", "set, but history_size is 0"),
        ("[channels.namespaces._]\nhistory_size = 5\n", "channels.namespaces._: \"_\" is reserved"),
        ("[channels.namespaces.\"a b\"]\n", "not a namespace name"),
        ("[nats]\nhistory_replicas = 7\n", "history_replicas must be from 1 to 5"),
    ];
    for (text, want) in cases {
        let file = write(text);
        let err = gateway_summary_for(&[
            "switchboard",
            "gateway",
            "--nats",
            "nats://127.0.0.1:4222",
            "--allow-anonymous",
            "--config",
            file.path().to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let file = write(
        "[gateway]\nmax_message_size = 1000\nmax_subscriptions = 7\n[nats]\nurls = [\"nats://from-file:4222\"]\n\
         [channels.namespaces.chat]\nsubscribe = \"authenticated\"\npublish = \"granted\"\n[auth]\nallow_anonymous = true\n",
    );
    let path = file.path().to_str().unwrap();
    let got = gateway_summary_for(&["switchboard", "gateway", "--config", path, "--max-message-size", "3000"]).unwrap();
    assert_eq!(got["gateway"]["max_message_size"], 3000, "the flag wins");
    assert_eq!(got["gateway"]["max_subscriptions"], 7, "the file wins over the default");
    assert_eq!(got["gateway"]["max_queue_bytes"], 1 << 20, "the default where neither says");
    assert_eq!(got["nats"]["urls"][0], "nats://from-file:4222");
    assert_eq!(got["gateway"]["channels"]["namespaces"]["chat"]["publish"], "granted");
    assert_eq!(got["nats"]["history"]["namespaces"]["chat"], serde_json::Value::Null, "no history by default");
    let got = gateway_summary_for(&["switchboard", "gateway", "--config", path, "--nats", "nats://flag:4222"]).unwrap();
    assert_eq!(got["nats"]["urls"][0], "nats://flag:4222");
}

#[test]
fn a_gateway_without_keys_refuses_to_start_unless_anonymous_is_allowed() {
    let err = gateway_summary_for(&["switchboard", "gateway", "--nats", "nats://x:4222"]).unwrap_err();
    assert!(err.contains("anonymous"), "{err}");
    assert!(gateway_summary_for(&["switchboard", "gateway", "--nats", "nats://x:4222", "--token-secret", "s"]).is_ok());
    let (Command::Dev(a), x) = cli(&["switchboard", "dev"]) else { panic!() };
    assert!(dev(&a, &x).unwrap().gateway.auth.allow_anonymous, "dev allows anonymous sessions by default");
}

#[test]
fn history_is_kept_per_namespace_as_the_file_says() {
    let file = write(
        "[channels.default]\nhistory_size = 10\n[channels.namespaces.chat]\nhistory_size = 100\nhistory_ttl = \"10m\"\n\
         [channels.namespaces.live]\npublish = \"nobody\"\n[nats]\nhistory_replicas = 3\n",
    );
    let path = file.path().to_str().unwrap();
    let got = gateway_summary_for(&[
        "switchboard",
        "gateway",
        "--nats",
        "nats://n:4222",
        "--allow-anonymous",
        "--config",
        path,
    ])
    .unwrap();
    let history = &got["nats"]["history"];
    assert_eq!(history["default"], serde_json::json!({"size": 10, "ttl_ms": 3_600_000}));
    assert_eq!(history["namespaces"]["chat"], serde_json::json!({"size": 100, "ttl_ms": 600_000}));
    assert_eq!(history["namespaces"]["live"], serde_json::Value::Null, "a listed namespace without history");
    assert_eq!(got["nats"]["history_replicas"], 3);
}

#[test]
fn demo_tokens_are_a_dev_flag_only_and_bring_their_own_key() {
    let (Command::Dev(a), x) = cli(&["switchboard", "dev", "--demo-tokens"]) else { panic!() };
    let g = dev(&a, &x).unwrap().gateway;
    let demo = g.demo_tokens.as_ref().expect("--demo-tokens turns the endpoint on");
    assert_eq!(demo.secret.len(), 32);
    assert!(
        g.auth.keys.iter().any(|k| matches!(&k.material, KeyMaterial::Hmac(s) if *s == demo.secret)),
        "the gateway checks tokens with the demo secret"
    );
    assert!(g.auth.allow_anonymous, "anonymous sessions stay allowed");
    let (Command::Dev(a), x) = cli(&["switchboard", "dev", "--demo-tokens"]) else { panic!() };
    assert_ne!(dev(&a, &x).unwrap().gateway.demo_tokens.unwrap().secret, demo.secret, "a secret drawn at every start");
    let (Command::Dev(a), x) = cli(&["switchboard", "dev"]) else { panic!() };
    assert!(dev(&a, &x).unwrap().gateway.demo_tokens.is_none(), "off by default");
    // `gateway` has no such flag, and nothing else turns it on.
    assert!(Cli::command().try_get_matches_from(["switchboard", "gateway", "--demo-tokens"]).is_err());
    let (Command::Gateway(a), x) =
        cli(&["switchboard", "gateway", "--nats", "nats://x:4222", "--allow-anonymous", "--page"])
    else {
        panic!()
    };
    assert!(gateway(&a, &x).unwrap().0.demo_tokens.is_none());
}

#[test]
fn the_chat_example_config_is_what_make_run_needs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/chat/switchboard.toml");
    let (Command::Dev(a), x) = cli(&["switchboard", "dev", "--config", path, "--demo-tokens"]) else { panic!() };
    let d = dev(&a, &x).unwrap();
    let (g, n) = (d.gateway, d.namespaces);
    let history = n.namespaces["chat"].as_ref().expect("chat keeps history (on join, recovery)");
    assert_eq!((history.size, history.ttl), (1000, Duration::from_secs(3600)));
    let chat = &g.channels.namespaces["chat"];
    assert!(chat.presence && chat.join_leave, "chat has presence and join/leave for the presence list");
    assert!(n.namespaces["typing"].is_none(), "typing indicators are live only");
    for ns in ["chat", "typing"] {
        assert_eq!(g.channels.namespaces[ns].publish, Access::Anyone, "{ns}: clients publish");
    }
}

fn control_for(args: &[&str]) -> Result<ControlSettings, String> {
    let base = ["switchboard", "control", "--nats", "nats://x:4222", "--allow-unauthenticated-api"];
    let all: Vec<&str> = base.iter().chain(args).copied().collect();
    let (Command::Control(a), x) = cli(&all) else { panic!("not a control command") };
    control(&a, &x).map_err(|e| e.0)
}

#[test]
fn the_balance_knobs_come_from_flags_or_the_file_and_bad_values_are_refused() {
    let file = write("[control.balance]\nwindow = \"3s\"\nmax_share_percent = 50\nenabled = false\n");
    let path = file.path().to_str().unwrap();
    let b = control_for(&["--config", path]).unwrap().config.balance;
    assert_eq!((b.enabled, b.window, b.max_share_percent), (false, Duration::from_secs(3), 50));
    assert_eq!(b.interval, Duration::from_secs(5), "the default where neither says");
    let b =
        control_for(&["--config", path, "--balance-window", "1s", "--balance-warmup", "2s"]).unwrap().config.balance;
    assert_eq!((b.window, b.warmup, b.max_share_percent), (Duration::from_secs(1), Duration::from_secs(2), 50));
    assert!(control_for(&[]).unwrap().config.balance.enabled, "on by default");
    assert!(!control_for(&["--no-balance"]).unwrap().config.balance.enabled);
    for (args, want) in [
        (&["--balance-tolerance-percent", "0"][..], "balance.tolerance_percent"),
        (&["--balance-max-share-percent", "101"], "balance.max_share_percent"),
        (&["--balance-interval", "0s"], "balance.interval"),
    ] {
        let err = control_for(args).unwrap_err();
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let file = write("[control.balance]\nwindw = \"3s\"\n");
    let err = control_for(&["--config", file.path().to_str().unwrap()]).unwrap_err();
    assert!(err.contains("unknown field `windw`"), "{err}");
}

#[test]
fn the_log_settings_come_from_the_flag_then_the_file() {
    let file = write("[log]\nlevel = \"switchboard_gateway=debug\"\nformat = \"json\"\n");
    let path = Some(file.path());
    assert_eq!(log_settings(None, None, path), ("switchboard_gateway=debug".to_owned(), LogFormat::Json));
    assert_eq!(log_settings(Some("warn"), Some(LogFormat::Text), path), ("warn".to_owned(), LogFormat::Text));
    // The example file says the defaults.
    let example = write(EXAMPLE);
    let (filter, format) = log_settings(None, None, Some(example.path()));
    assert_eq!((filter.as_str(), format), (crate::telemetry::DEFAULT_LOG_FILTER, LogFormat::Text));
}

#[test]
fn a_log_level_that_does_not_parse_is_refused_with_its_key() {
    let e = parse("[log]\nlevel = \"=x=[\"\n").unwrap_err();
    assert!(e.starts_with("log.level: "), "{e}");
    let e = parse("[log]\nformat = \"yaml\"\n").unwrap_err();
    assert!(e.contains("yaml") && e.contains("format"), "{e}");
}

#[test]
fn dev_reads_the_api_settings_of_control_from_the_file_and_a_flag_wins() {
    use switchboard_control::ApiKeys;
    let keys_file = write("k-from-the-keys-file-0123\n");
    let keys_path = keys_file.path().to_str().unwrap();
    let file = write(&format!(
        "[control]\napi_keys = [\"k-from-the-file-012345\"]\napi_keys_file = {keys_path:?}\nreflection = false\n"
    ));
    let path = file.path().to_str().unwrap();
    let dev_for = |args: &[&str]| {
        let all: Vec<&str> = ["switchboard", "dev"].iter().chain(args).copied().collect();
        let (Command::Dev(a), x) = cli(&all) else { panic!("not dev") };
        dev(&a, &x).map_err(|e| e.0)
    };
    let d = dev_for(&["--config", path]).unwrap();
    assert_eq!(d.api_keys, ApiKeys::new(&["k-from-the-file-012345".to_owned()]).with_file(keys_path));
    assert!(!d.reflection, "control.reflection");
    let d = dev_for(&["--config", path, "--api-keys", "k-from-the-flag-012345", "--no-reflection"]).unwrap();
    assert_eq!(d.api_keys, ApiKeys::new(&["k-from-the-flag-012345".to_owned()]).with_file(keys_path));
    let d = dev_for(&[]).unwrap();
    assert!(d.api_keys.is_empty() && d.reflection && d.api_tls.is_none(), "open, with reflection, by default");
    // Open by default in dev, unless the file says not; then the flag allows it again.
    let closed = write("[control]\nallow_unauthenticated_api = false\n");
    let closed = closed.path().to_str().unwrap();
    let err = dev_for(&["--config", closed]).unwrap_err();
    assert!(err.contains("needs API keys"), "{err}");
    assert!(dev_for(&["--config", closed, "--allow-unauthenticated-api"]).is_ok());
    assert!(dev_for(&["--config", closed, "--api-keys", "k-from-the-flag-012345"]).is_ok());
}

#[test]
fn the_check_summary_says_whether_each_listener_serves_tls() {
    let got = gateway_summary_for(&["switchboard", "gateway", "--nats", "nats://x:4222", "--allow-anonymous"]).unwrap();
    assert_eq!(got["gateway"]["tls"], serde_json::json!({"on": false}));
    assert_eq!(got["nats"]["tls"], "when the server asks");
    let got = gateway_summary_for(&["switchboard", "gateway", "--nats", "tls://x:4222", "--allow-anonymous"]).unwrap();
    assert_eq!(got["nats"]["tls"], "on", "a tls:// url");
    // With TLS on: tests/e2e/tls.rs (it needs real certificate files).
}
