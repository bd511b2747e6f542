//! Bus subject names, built here and nowhere else.
//!
//! Scheme (documented in docs/architecture.md), with a configurable prefix (default `sb`):
//!
//! | subject | carries |
//! |---|---|
//! | `{prefix}.pub.{namespace}.{name}` | publications on a channel (`_` stands for no namespace) |
//!
//! A channel's name may contain `.`, which NATS reads as a token separator, so it is written
//! as `%2E`; the channel grammar admits no `%`, `*`, `>` or whitespace, so no channel can
//! produce a wildcard, an extra token, or another channel's subject.

use switchboard_wire::Channel;

/// The prefix every subject starts with, unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "sb";

/// Builds subject names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// A prefix that is not one or more dot-separated tokens of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject prefix {0:?}: use dot-separated tokens of letters, digits, '_' and '-'")]
pub struct InvalidPrefix(pub String);

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = !prefix.is_empty()
            && prefix
                .split('.')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if ok { Ok(Subjects { prefix: prefix.to_owned() }) } else { Err(InvalidPrefix(prefix.to_owned())) }
    }

    /// The subject a channel's publications travel on.
    pub fn publication(&self, channel: &Channel) -> String {
        let ns = match channel.namespace() {
            "" => "_",
            ns => ns,
        };
        let mut s = String::with_capacity(self.prefix.len() + channel.as_str().len() + 12);
        s.push_str(&self.prefix);
        s.push_str(".pub.");
        s.push_str(ns);
        s.push('.');
        for c in channel.name().chars() {
            match c {
                '.' => s.push_str("%2E"),
                c => s.push(c),
            }
        }
        s
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_map_to_one_token_each() {
        let s = Subjects::default();
        for (ch, subject) in [
            ("news", "sb.pub._.news"),
            ("chat:room-1", "sb.pub.chat.room-1"),
            ("orders:eu.42", "sb.pub.orders.eu%2E42"),
            ("a:b=c@d,e;f/g!h~i+j", "sb.pub.a.b=c@d,e;f/g!h~i+j"),
        ] {
            assert_eq!(s.publication(&Channel::parse(ch).unwrap()), subject);
        }
    }

    #[test]
    fn distinct_channels_never_share_a_subject() {
        let s = Subjects::new("app.prod").unwrap();
        let a = s.publication(&Channel::parse("x:a.b").unwrap());
        let b = s.publication(&Channel::parse("x:a%2Eb").unwrap_or_else(|_| Channel::parse("x:a_b").unwrap()));
        assert_ne!(a, b);
        assert_eq!(a, "app.prod.pub.x.a%2Eb");
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        for p in ["", ".", "a..b", "a.*", "a.>", "a b"] {
            assert!(Subjects::new(p).is_err(), "{p:?}");
        }
    }
}
