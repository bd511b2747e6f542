//! Bus subject names, built here and nowhere else.
//!
//! The scheme, under a configurable prefix (default `sb`); docs/architecture.md repeats it:
//!
//! | subject | address | carries | who listens |
//! |---|---|---|---|
//! | `{p}.pub.{key}.{channel}` | (channels) | a channel's publications: published there (live-only) or republished by its stream; its events (join, leave) as core messages with an `Sb-Event` header | gateways with local subscribers |
//! | `{p}.hist.{key}.{channel}` | (channels) | a history channel's publications, published to be stored | the namespace's JetStream stream |
//! | `{p}.node.{node}` | `Node(id)` | commands for one gateway's sessions, snapshot requests | that gateway |
//! | `{p}.user.{user}` | `User(id)` | commands for every session of a user | gateways holding a session of the user |
//! | `{p}.gateways` | `Gateways` | snapshot requests for every gateway | every gateway |
//! | `{p}.reg.{shard}` | `Registry(shard)` | session events (connect, disconnect, subscribe, unsubscribe) | the control replica owning the shard; `WatchEvents` streams (`{p}.reg.*`) |
//! | `{p}.hb.gateway` | `GatewayHeartbeat` | gateway heartbeats | control replicas |
//! | `{p}.hb.control` | `ControlHeartbeat` | control replica heartbeats | control replicas |
//! | `{p}.ctl.{replica}` | `Replica(id)` | queries between control replicas | that replica |
//! | `{p}.presence` | `Presence` | gateways' presence questions (a client's `presence`, `presence_stats`) | control replicas (queue group `control`: one answers) |
//! | `{p}.up.send` | `UpstreamSend` | client `send` messages | backends (queue group of their choice) |
//! | `{p}.up.rpc.{method}` | `UpstreamRpc(method)` | client `rpc` requests | backends (queue group of their choice) |
//! | `{p}.probe.{node}` | `Probe(id)` | liveness round trips of a node's NATS connection | nobody: the server itself answers "no responders" |
//!
//! `{key}` is the channel's [`Namespaces::key`](crate::Namespaces::key): its namespace when
//! the configuration lists it, else `_`; `{channel}` is the whole channel name. A channel's
//! name may contain `.`, which NATS reads as a token separator, so it is written as `%2E`; the channel grammar admits no `%`, `*`, `>` or whitespace, so no channel can
//! produce a wildcard, an extra token, or another channel's subject. User ids are free-form
//! (they come from tokens), so every byte outside `[A-Za-z0-9_-]` is percent-encoded.
//!
//! NATS refuses a protocol line longer than 4,096 bytes (`maximum control line exceeded`)
//! and drops the connection that sent it, so a subject built here is at most
//! [`MAX_SUBJECT_LEN`] bytes: [`Subjects::address`] refuses a longer one, and the prefix and
//! channel grammar bound the rest. Callers bound the ids they accept from outside (user ids
//! from tokens, session ids from the API) well below that, so a refusal here is a last line
//! of defence, never the first check.

use std::sync::Arc;

use switchboard_wire::Channel;

/// The prefix every subject starts with, unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "sb";

/// Longest subject built here, in bytes: with a reply inbox and the payload size it keeps
/// a NATS protocol line far below the server's 4,096-byte limit.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Longest subject prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// A control-plane destination on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// One gateway's command inbox.
    Node(Arc<str>),
    /// Every gateway holding a session of this user.
    User(Arc<str>),
    /// Every gateway (snapshot requests).
    Gateways,
    /// Registry events of one shard of the session key space.
    Registry(u16),
    /// Registry events of every shard (listen only).
    RegistryAll,
    GatewayHeartbeat,
    ControlHeartbeat,
    /// One control replica's query inbox.
    Replica(Arc<str>),
    /// Presence questions from gateways, for any control replica.
    Presence,
    UpstreamSend,
    UpstreamRpc(Arc<str>),
    /// Where a node sends its liveness round trips: nobody listens, so the server itself
    /// answers "no responders", which proves the connection alive.
    Probe(Arc<str>),
}

/// Builds subject names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// A prefix that is not one or more dot-separated tokens of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject prefix {0:?}: use dot-separated tokens of letters, digits, '_' and '-', at most 128 bytes")]
pub struct InvalidPrefix(pub String);

/// An address whose subject would be longer than [`MAX_SUBJECT_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject of {len} bytes is longer than the {MAX_SUBJECT_LEN} NATS can safely carry")]
pub struct SubjectTooLong {
    pub len: usize,
}

/// Whether `s` is a valid single token of `[A-Za-z0-9_-]` (node and replica ids, rpc methods).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if !prefix.is_empty() && prefix.len() <= MAX_PREFIX_LEN && prefix.split('.').all(is_token) {
            Ok(Subjects { prefix: prefix.to_owned() })
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject a channel's publications reach the gateways on. Always within
    /// [`MAX_SUBJECT_LEN`]: a channel is at most 255 bytes, and only its `.`s grow (to three
    /// bytes each).
    pub fn live(&self, key: &str, channel: &Channel) -> String {
        self.channel_subject("pub", key, channel)
    }

    /// The subject a history channel's publications are published on, to be stored.
    pub fn stored(&self, key: &str, channel: &Channel) -> String {
        self.channel_subject("hist", key, channel)
    }

    /// Every subject of `kind` of one namespace key (`{p}.{kind}.{key}.*`).
    pub fn channels_of(&self, kind: &str, key: &str) -> String {
        format!("{}.{kind}.{key}.*", self.prefix)
    }

    fn channel_subject(&self, kind: &str, key: &str, channel: &Channel) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len() + channel.as_str().len() + 12);
        s.push_str(&self.prefix);
        s.push('.');
        s.push_str(kind);
        s.push('.');
        s.push_str(key);
        s.push('.');
        for c in channel.as_str().chars() {
            match c {
                '.' => s.push_str("%2E"),
                c => s.push(c),
            }
        }
        s
    }

    /// The subject of a control-plane address; refused when it would be longer than
    /// [`MAX_SUBJECT_LEN`] (an id from outside that nobody bounded).
    pub fn address(&self, a: &Address) -> Result<String, SubjectTooLong> {
        let subject = self.format(a);
        match subject.len() {
            len if len > MAX_SUBJECT_LEN => Err(SubjectTooLong { len }),
            _ => Ok(subject),
        }
    }

    fn format(&self, a: &Address) -> String {
        let p = &self.prefix;
        match a {
            Address::Node(id) => format!("{p}.node.{}", escape(id)),
            Address::User(id) => format!("{p}.user.{}", escape(id)),
            Address::Gateways => format!("{p}.gateways"),
            Address::Registry(shard) => format!("{p}.reg.{shard}"),
            Address::RegistryAll => format!("{p}.reg.*"),
            Address::GatewayHeartbeat => format!("{p}.hb.gateway"),
            Address::ControlHeartbeat => format!("{p}.hb.control"),
            Address::Replica(id) => format!("{p}.ctl.{}", escape(id)),
            Address::Presence => format!("{p}.presence"),
            Address::UpstreamSend => format!("{p}.up.send"),
            Address::UpstreamRpc(method) => format!("{p}.up.rpc.{}", escape(method)),
            Address::Probe(id) => format!("{p}.probe.{}", escape(id)),
        }
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

/// Percent-encodes every byte outside `[A-Za-z0-9_-]`, so any string is one safe token.
fn escape(s: &str) -> String {
    if is_token(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Whether `subject` matches `pattern` (NATS rules: `*` one token, `>` the rest).
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_one_token_each() {
        let s = Subjects::default();
        for (key, ch, subject) in [
            ("_", "news", "sb.pub._.news"),
            ("chat", "chat:room-1", "sb.pub.chat.chat:room-1"),
            ("orders", "orders:eu.42", "sb.pub.orders.orders:eu%2E42"),
            ("_", "a:b=c@d,e;f/g!h~i+j", "sb.pub._.a:b=c@d,e;f/g!h~i+j"),
        ] {
            assert_eq!(s.live(key, &Channel::parse(ch).unwrap()), subject);
        }
        assert_eq!(s.stored("chat", &Channel::parse("chat:x").unwrap()), "sb.hist.chat.chat:x");
        assert_eq!(s.channels_of("hist", "chat"), "sb.hist.chat.*");
    }

    #[test]
    fn free_form_ids_cannot_inject_tokens_or_wildcards() {
        let s = Subjects::new("app.prod").unwrap();
        for (user, subject) in [
            ("alice", "app.prod.user.alice"),
            ("a.b", "app.prod.user.a%2Eb"),
            ("*", "app.prod.user.%2A"),
            (">", "app.prod.user.%3E"),
            ("x y", "app.prod.user.x%20y"),
            ("", "app.prod.user.%00"),
        ] {
            assert_eq!(s.address(&Address::User(user.into())).unwrap(), subject);
        }
    }

    #[test]
    fn subjects_nats_cannot_carry_are_refused() {
        let s = Subjects::default();
        // 1,000 dots escape to 3,000 bytes: far past the limit.
        let dots: Arc<str> = ".".repeat(1000).into();
        assert_eq!(s.address(&Address::User(dots)), Err(SubjectTooLong { len: 3008 }));
        let long_session: Arc<str> = "g".repeat(5000).into();
        assert!(s.address(&Address::Node(long_session)).is_err());
        // The longest channel still fits, dots and all.
        let channel = Channel::parse(&format!("{}:{}", "n".repeat(64), ".".repeat(190))).unwrap();
        assert!(s.stored(&"n".repeat(64), &channel).len() <= MAX_SUBJECT_LEN);
        assert!(Subjects::new(&"p".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        for p in ["", ".", "a..b", "a.*", "a.>", "a b"] {
            assert!(Subjects::new(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn wildcards_match_like_nats() {
        for (p, s, want) in [
            ("sb.reg.*", "sb.reg.17", true),
            ("sb.reg.*", "sb.reg.17.x", false),
            ("sb.up.>", "sb.up.rpc.m", true),
            ("sb.up.>", "sb.up", false),
            ("sb.a", "sb.a", true),
            ("sb.a", "sb.b", false),
        ] {
            assert_eq!(matches(p, s), want, "{p} ~ {s}");
        }
    }
}
