//! `switchboard token`: mints a connect token for tries and tests, like Centrifugo's
//! `gentoken`, from a secret, a private key, or the first HMAC key of a config file; with
//! the file's `auth.issuer` and `auth.audience` as `iss` and `aud` unless `--iss`/`--aud`
//! say otherwise, so a token minted from a gateway's file is one that gateway accepts.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::value::RawValue;

use crate::UsageError;
use crate::cli::TokenArgs;

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    println!("{}", mint(&args)?);
    Ok(())
}

/// The token `args` describe.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    if args.user.is_empty() {
        return Err(UsageError("--user must not be empty".into()).into());
    }
    let file = crate::config::load(args.config.path.as_deref())?;
    let (key, default_alg, kid) = signing_key(args, &file)?;
    let alg = match &args.alg {
        Some(name) => {
            name.parse::<Algorithm>().map_err(|_| UsageError(format!("--alg {name:?} is not a JWT algorithm")))?
        }
        None => default_alg,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_secs();
    let mut claims = serde_json::json!({"sub": args.user, "iat": now, "exp": now + args.ttl.as_secs().max(1)});
    let grants = [
        ("subscribe", &args.channels),
        ("publish", &args.publish),
        ("presence", &args.presence),
        ("history", &args.history),
    ];
    if grants.iter().any(|(_, patterns)| !patterns.is_empty()) {
        let mut channels = serde_json::json!({"subscribe": args.channels, "publish": args.publish});
        for (op, patterns) in &grants[2..] {
            if !patterns.is_empty() {
                channels[op] = serde_json::json!(patterns);
            }
        }
        claims["channels"] = channels;
    }
    let auth = file.auth.as_ref();
    if let Some(iss) = args.iss.clone().or_else(|| auth.and_then(|a| a.issuer.clone())) {
        claims["iss"] = iss.into();
    }
    if let Some(aud) = args.aud.clone().or_else(|| auth.and_then(|a| a.audience.clone())) {
        claims["aud"] = aud.into();
    }
    if let Some(info) = &args.info {
        let raw: &RawValue = serde_json::from_str(info).map_err(|e| UsageError(format!("--info is not JSON: {e}")))?;
        claims["info"] = serde_json::from_str(raw.get())?;
    }
    let mut header = Header::new(alg);
    header.kid = args.kid.clone().or(kid);
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| UsageError(format!("cannot sign with {alg:?}: {e}")).into())
}

/// The key to sign with, its natural algorithm, and its `kid`.
fn signing_key(
    args: &TokenArgs,
    file: &crate::config::file::FileConfig,
) -> anyhow::Result<(EncodingKey, Algorithm, Option<String>)> {
    if let Some(secret) = &args.secret {
        return Ok((EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256, None));
    }
    if let Some(path) = &args.private_key {
        let pem = std::fs::read(path).map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
        let key = EncodingKey::from_rsa_pem(&pem)
            .map(|k| (k, Algorithm::RS256))
            .or_else(|_| EncodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
            .or_else(|_| EncodingKey::from_ed_pem(&pem).map(|k| (k, Algorithm::EdDSA)))
            .map_err(|_| UsageError(format!("{}: not an RSA, EC or Ed25519 private key in PEM", path.display())))?;
        return Ok((key.0, key.1, None));
    }
    for k in file.auth.iter().flat_map(|a| a.keys.iter().flatten()) {
        let secret = match (&k.hmac_secret, &k.hmac_secret_env, &k.hmac_secret_file) {
            (Some(s), _, _) => Some(s.clone()),
            (_, Some(env), _) => std::env::var(env).ok(),
            (_, _, Some(path)) => {
                std::fs::read_to_string(path).ok().map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            }
            _ => None,
        };
        if let Some(secret) = secret {
            return Ok((EncodingKey::from_secret(secret.as_bytes()), Algorithm::HS256, k.kid.clone()));
        }
    }
    Err(UsageError("no key to sign with: give --secret (or SWITCHBOARD_TOKEN_SECRET), --private-key, or a --config with an HMAC key".into()).into())
}
