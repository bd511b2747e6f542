//! Channel permissions per namespace: who may subscribe to and publish on a channel.
//!
//! The part of a channel name before `:` selects its namespace's rules; a channel without
//! a namespace follows the `default` rules, and so does a channel of a namespace that is
//! not configured, unless `unknown_namespaces` is `refuse`. A personal channel (a name
//! with a `#`, see `Channel::users`) may be subscribed to only by the users it lists,
//! whatever the namespace's subscribe rule (unless that is `nobody`). A channel's presence
//! and history are open to whoever may subscribe to it, and to a token whose
//! `channels.presence` / `channels.history` patterns match it. Backends (gRPC
//! publish, server-side subscribe) are never checked: the backend decided.

use std::collections::HashMap;

use switchboard_wire::Channel;

use crate::auth::{Grants, pattern_matches};

/// Who may do something on a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No client.
    Nobody,
    /// Every session, anonymous ones included.
    Anyone,
    /// Sessions with a user (a verified token).
    Authenticated,
    /// Sessions whose token grants the channel (its `channels` claim).
    Granted,
}

impl Access {
    /// The names used in configuration files.
    pub const NAMES: [&'static str; 4] = ["nobody", "anyone", "authenticated", "granted"];

    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "nobody" => Some(Access::Nobody),
            "anyone" => Some(Access::Anyone),
            "authenticated" => Some(Access::Authenticated),
            "granted" => Some(Access::Granted),
            _ => None,
        }
    }
}

/// The rules of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceRules {
    /// Who may subscribe. Default `anyone`.
    pub subscribe: Access,
    /// Who may publish from a client. Default `anyone`.
    pub publish: Access,
    /// Whether clients that may subscribe may ask the channel's presence (`presence`,
    /// `presence_stats`). Default false.
    pub presence: bool,
    /// Whether subscribers get `join` and `leave` pushes. Default false.
    pub join_leave: bool,
}

impl Default for NamespaceRules {
    fn default() -> Self {
        NamespaceRules { subscribe: Access::Anyone, publish: Access::Anyone, presence: false, join_leave: false }
    }
}

/// What a channel of a namespace that is not configured gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownNamespaces {
    /// The `default` rules. The default.
    #[default]
    Default,
    /// Error 103 on subscribe and publish.
    Refuse,
}

/// The permission rules of every channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRules {
    /// Channels without a namespace, and (with [`UnknownNamespaces::Default`]) those of a
    /// namespace not listed.
    pub default: NamespaceRules,
    /// Rules by namespace name.
    pub namespaces: HashMap<String, NamespaceRules>,
    pub unknown_namespaces: UnknownNamespaces,
}

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Subscribe,
    Publish,
    /// Ask who is subscribed (`presence`, `presence_stats`).
    Presence,
    /// Read the channel's history (`history`).
    History,
}

impl ChannelRules {
    /// The rules `channel` follows; `None` for a namespace that is not configured when
    /// those are refused.
    pub fn rules(&self, channel: &Channel) -> Option<&NamespaceRules> {
        let ns = channel.namespace();
        match self.namespaces.get(ns) {
            Some(rules) => Some(rules),
            None if ns.is_empty() || self.unknown_namespaces == UnknownNamespaces::Default => Some(&self.default),
            None => None,
        }
    }

    /// Whether subscribers of `channel` get `join` and `leave` pushes.
    pub fn join_leave(&self, channel: &Channel) -> bool {
        self.rules(channel).is_some_and(|r| r.join_leave)
    }

    /// Whether a session of `user` (`""` when anonymous) holding `grants` may do `op` on
    /// `channel`; the error says why not.
    /// Presence and history: whoever may subscribe, or a token granting it.
    pub fn check(&self, op: Op, channel: &Channel, user: &str, grants: &Grants) -> Result<(), String> {
        let read_grant = match op {
            Op::Presence => Some(&grants.presence),
            Op::History => Some(&grants.history),
            Op::Subscribe | Op::Publish => None,
        };
        if let Some(patterns) = read_grant {
            if self.rules(channel).is_some() && pattern_matches(patterns, channel) {
                return Ok(());
            }
            return self.check(Op::Subscribe, channel, user, grants);
        }
        let ns = channel.namespace();
        let rules = match self.namespaces.get(ns) {
            Some(rules) => rules,
            None if ns.is_empty() || self.unknown_namespaces == UnknownNamespaces::Default => &self.default,
            None => return Err(format!("namespace {ns:?} is not configured on this gateway")),
        };
        let (access, patterns, verb) = match op {
            Op::Subscribe => (rules.subscribe, &grants.subscribe, "subscribe to"),
            Op::Publish => (rules.publish, &grants.publish, "publish on"),
            Op::Presence | Op::History => unreachable!("answered above"),
        };
        if access == Access::Nobody {
            return Err(format!("clients may not {verb} channels of this namespace"));
        }
        if op == Op::Subscribe
            && let Some(mut users) = channel.users()
        {
            return if !user.is_empty() && users.any(|u| u == user) {
                Ok(())
            } else {
                Err(format!("{channel} is a personal channel of other users"))
            };
        }
        match access {
            Access::Anyone => Ok(()),
            Access::Authenticated if !user.is_empty() => Ok(()),
            Access::Authenticated => Err(format!("anonymous sessions may not {verb} {channel}")),
            Access::Granted if pattern_matches(patterns, channel) => Ok(()),
            Access::Granted => Err(format!("the token does not grant {verb} {channel}")),
            Access::Nobody => unreachable!("checked above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_allows_exactly_whom_it_says() {
        let rules = ChannelRules {
            default: NamespaceRules::default(),
            namespaces: HashMap::from([
                (
                    "open".into(),
                    NamespaceRules { subscribe: Access::Anyone, publish: Access::Nobody, ..Default::default() },
                ),
                (
                    "members".into(),
                    NamespaceRules {
                        subscribe: Access::Authenticated,
                        publish: Access::Authenticated,
                        ..Default::default()
                    },
                ),
                (
                    "paid".into(),
                    NamespaceRules { subscribe: Access::Granted, publish: Access::Granted, ..Default::default() },
                ),
                (
                    "notes".into(),
                    NamespaceRules { subscribe: Access::Granted, publish: Access::Nobody, ..Default::default() },
                ),
                ("staff".into(), NamespaceRules { subscribe: Access::Nobody, ..Default::default() }),
            ]),
            unknown_namespaces: UnknownNamespaces::Refuse,
        };
        let grants = Grants {
            subscribe: vec!["paid:gold-*".into()],
            publish: vec!["paid:gold-1".into()],
            presence: vec!["staff:*".into(), "nowhere:*".into()],
            history: vec!["paid:silver-*".into()],
        };
        let none = Grants::default();
        use Op::{History as H, Presence as R, Publish as P, Subscribe as S};
        let cases: &[(Op, &str, &str, &Grants, bool)] = &[
            (S, "lobby", "", &none, true),
            (P, "lobby", "", &none, true),
            (S, "open:x", "", &none, true),
            (P, "open:x", "alice", &grants, false),
            (S, "members:x", "", &none, false),
            (S, "members:x", "alice", &none, true),
            (S, "paid:gold-1", "alice", &none, false),
            (S, "paid:gold-1", "alice", &grants, true),
            (S, "paid:silver-1", "alice", &grants, false),
            (P, "paid:gold-1", "alice", &grants, true),
            (P, "paid:gold-2", "alice", &grants, false),
            (S, "nowhere:x", "alice", &grants, false),
            // Personal channels: only the users listed, whatever the grants.
            (S, "notes:#alice", "alice", &none, true),
            (S, "notes:#alice", "bob", &grants, false),
            (S, "notes:#alice", "", &none, false),
            (S, "notes:shared#bob,alice", "alice", &none, true),
            (P, "notes:#alice", "alice", &none, false),
            (S, "open:#alice", "alice", &none, true),
            (S, "open:#alice", "carol", &none, false),
            // Presence and history: whoever may subscribe, or a token granting it.
            (R, "paid:gold-1", "alice", &grants, true),
            (H, "paid:gold-1", "alice", &grants, true),
            (R, "paid:gold-1", "alice", &none, false),
            (R, "staff:room", "alice", &grants, true),
            (S, "staff:room", "alice", &grants, false),
            (H, "staff:room", "alice", &grants, false),
            (H, "paid:silver-1", "alice", &grants, true),
            (R, "paid:silver-1", "alice", &grants, false),
            (S, "paid:silver-1", "alice", &grants, false),
            // A grant does not open a namespace that is not configured.
            (R, "nowhere:x", "alice", &grants, false),
        ];
        for (op, channel, user, grants, want) in cases {
            let got = rules.check(*op, &Channel::parse(channel).unwrap(), user, grants);
            assert_eq!(got.is_ok(), *want, "{op:?} {channel} as {user:?}: {got:?}");
        }
    }
}
