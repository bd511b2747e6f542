//! The channel capabilities a token grants: its `channels` claim.
//!
//! ```json
//! "channels": {"subscribe": ["chat:*", "news"], "publish": ["chat:lobby"],
//!              "presence": ["room:*"], "history": ["room:*"]}
//! ```
//!
//! `subscribe` and `publish` serve namespaces whose rule is `granted`. `presence` and
//! `history` widen who may read a channel: its presence (or history) is open to whoever
//! may subscribe to it, or to a token whose `presence` (`history`) patterns match it,
//! whatever the namespace's subscribe rule (a moderator's dashboard that sees who is in a
//! room without subscribing). The namespace must still have presence (history) on.
//!
//! A pattern is a channel name, or a prefix ending in `*` that matches every channel
//! starting with it (`chat:*`, `chat:room-*`, `*`). Only a trailing `*` is special.

use serde::Deserialize;
use switchboard_wire::Channel;

/// Patterns per operation; a namespace whose rule is `granted` allows the operation on the
/// channels these match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Grants {
    pub subscribe: Vec<String>,
    pub publish: Vec<String>,
    /// Channels whose presence the token may see without subscribing.
    pub presence: Vec<String>,
    /// Channels whose history the token may read without subscribing.
    pub history: Vec<String>,
}

impl Grants {
    /// No grants at all (an anonymous session, or a token without `channels`).
    pub const NONE: Grants =
        Grants { subscribe: Vec::new(), publish: Vec::new(), presence: Vec::new(), history: Vec::new() };

    /// Whether it grants nothing.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.publish.is_empty() && self.presence.is_empty() && self.history.is_empty()
    }
}

/// Whether any of `patterns` matches `channel`.
pub fn pattern_matches(patterns: &[String], channel: &Channel) -> bool {
    let name = channel.as_str();
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_trailing_star_prefixes() {
        let patterns = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], &str, bool)] = &[
            (&["chat:lobby"], "chat:lobby", true),
            (&["chat:lobby"], "chat:lobby2", false),
            (&["chat:*"], "chat:anything", true),
            (&["chat:*"], "chats:x", false),
            (&["chat:room-*"], "chat:room-1", true),
            (&["*"], "x:y", true),
            (&["c*t:x"], "cat:x", false),
            (&[], "chat:lobby", false),
        ];
        for (ps, ch, want) in cases {
            assert_eq!(pattern_matches(&patterns(ps), &Channel::parse(ch).unwrap()), *want, "{ps:?} ~ {ch}");
        }
    }
}
