//! Channel names: the grammar, validation, and the `Channel` handle.
//!
//! Grammar (also in docs/protocol.md):
//!
//! ```text
//! channel   = [ namespace ":" ] name          ; at most 255 bytes in all
//! namespace = 1*64( ALPHA / DIGIT / "_" / "-" )
//! name      = 1*( ALPHA / DIGIT / "_" / "-" / "=" / "@" / "." / "," / ";" / "/" / "!" / "~" / "+" / "#" )
//! ```
//!
//! ASCII only. The alphabet excludes whitespace, `*`, `>` and `%`, so a channel can never
//! carry a bus wildcard or token separator of its own: the bus maps `.` to an escape
//! sequence and everything else through unchanged (see `switchboard-bus`'s `subjects`).

use std::fmt;
use std::sync::Arc;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;
/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;

/// A validated channel name. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

/// Why a string is not a channel name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    #[error("channel namespace is empty or longer than {MAX_NAMESPACE_LEN} bytes")]
    BadNamespace,
    #[error("channel name part is empty")]
    EmptyName,
    #[error("channel name has a character outside the allowed set at byte {0}")]
    BadCharacter(usize),
    #[error("channel name has a second `:` at byte {0} (only one may separate the namespace from the name)")]
    SecondColon(usize),
}

// === impl Channel ===

impl Channel {
    /// Validates `s` against the channel grammar.
    pub fn parse(s: &str) -> Result<Self, ChannelError> {
        validate(s)?;
        Ok(Channel(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` and `other` come from one [`Channel::parse`] (clones of one value),
    /// not merely spell the same name: a session tells its current subscription of a
    /// channel from an earlier one that was unsubscribed while its bus work waited.
    pub fn is_same(&self, other: &Channel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The namespace, or `""` for a channel without one.
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }

    /// The part after the namespace.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, name)| name)
    }

    /// The users of a personal channel: a name with a `#` is only for the users listed,
    /// comma-separated, after its last `#` (`notes:#alice`, `dm:a-b#alice,bob`).
    pub fn users(&self) -> Option<impl Iterator<Item = &str>> {
        self.name().rsplit_once('#').map(|(_, users)| users.split(',').filter(|u| !u.is_empty()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({:?})", &*self.0)
    }
}

impl std::str::FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::parse(s)
    }
}

fn is_namespace_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_name_byte(b: u8) -> bool {
    is_namespace_byte(b) || b"=@.,;/!~+#".contains(&b)
}

fn validate(s: &str) -> Result<(), ChannelError> {
    if s.is_empty() {
        return Err(ChannelError::Empty);
    }
    if s.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    let (name_start, name) = match s.split_once(':') {
        Some((ns, name)) => {
            if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN {
                return Err(ChannelError::BadNamespace);
            }
            if let Some(i) = ns.bytes().position(|b| !is_namespace_byte(b)) {
                return Err(ChannelError::BadCharacter(i));
            }
            (ns.len() + 1, name)
        }
        None => (0, s),
    };
    if name.is_empty() {
        return Err(ChannelError::EmptyName);
    }
    match name.bytes().position(|b| !is_name_byte(b)) {
        Some(i) if name.as_bytes()[i] == b':' => Err(ChannelError::SecondColon(name_start + i)),
        Some(i) => Err(ChannelError::BadCharacter(name_start + i)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse_and_split() {
        for (s, ns, name) in [
            ("news", "", "news"),
            ("chat:room-1", "chat", "room-1"),
            ("orders:eu.42", "orders", "eu.42"),
            ("a:b=c@d,e;f/g!h~i+j", "a", "b=c@d,e;f/g!h~i+j"),
            ("notes:#alice", "notes", "#alice"),
        ] {
            let ch = Channel::parse(s).unwrap();
            assert_eq!((ch.namespace(), ch.name()), (ns, name), "{s}");
        }
    }

    #[test]
    fn personal_channels_name_their_users_after_the_last_hash() {
        let users = |s: &str| {
            let ch = Channel::parse(s).unwrap();
            ch.users().map(|u| u.map(str::to_owned).collect::<Vec<String>>())
        };
        assert_eq!(users("notes:#alice"), Some(vec!["alice".to_owned()]));
        assert_eq!(users("dm:a#b#alice,bob"), Some(vec!["alice".to_owned(), "bob".to_owned()]));
        assert_eq!(users("dm:x#"), Some(vec![]));
        assert_eq!(users("chat:lobby"), None);
    }

    #[test]
    fn names_that_could_inject_bus_tokens_are_rejected() {
        let long = "x".repeat(MAX_CHANNEL_LEN + 1);
        let cases: &[(&str, ChannelError)] = &[
            ("", ChannelError::Empty),
            (&long, ChannelError::TooLong),
            (":name", ChannelError::BadNamespace),
            ("ns:", ChannelError::EmptyName),
            ("a b", ChannelError::BadCharacter(1)),
            ("news.*", ChannelError::BadCharacter(5)),
            ("news.>", ChannelError::BadCharacter(5)),
            ("ns:a:b", ChannelError::SecondColon(4)),
            ("ns:a%:b", ChannelError::BadCharacter(4)),
            ("n.s:a", ChannelError::BadCharacter(1)),
            ("ns:caf\u{e9}", ChannelError::BadCharacter(6)),
            ("ns:a%2E", ChannelError::BadCharacter(4)),
            ("ns:tab\there", ChannelError::BadCharacter(6)),
        ];
        for (s, want) in cases {
            assert_eq!(Channel::parse(s).unwrap_err(), *want, "{s:?}");
        }
    }
}
