//! Property tests of the channel grammar.

use proptest::prelude::*;

use super::*;

/// A valid channel: an optional namespace and a name. Short enough (at most 60 + 1 + 190
/// bytes) that one more character of up to 4 bytes breaks no length limit.
fn valid_channel() -> impl Strategy<Value = (Option<String>, String)> {
    const _: () = assert!(60 + 4 <= MAX_NAMESPACE_LEN && 60 + 1 + 190 + 4 <= MAX_CHANNEL_LEN);
    (prop::option::of("[A-Za-z0-9_-]{1,60}"), "[A-Za-z0-9_=@.,;/!~+-]{1,190}")
}

fn join(ns: &Option<String>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{ns}:{name}"),
        None => name.to_owned(),
    }
}

/// A character neither part of a name nor the namespace separator.
fn forbidden_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("allowed in a name", |c| *c != ':' && !(c.is_ascii() && is_name_byte(*c as u8)))
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>(), t in "[a-z:.*> %\u{e9}-]{0,300}") {
        for s in [s, t] {
            if let Ok(ch) = Channel::parse(&s) {
                prop_assert_eq!(ch.as_str(), &s);
            }
        }
    }

    #[test]
    fn valid_names_parse_and_their_parts_reassemble_them((ns, name) in valid_channel()) {
        let s = join(&ns, &name);
        let ch = Channel::parse(&s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
        prop_assert_eq!(ch.namespace(), ns.as_deref().unwrap_or(""));
        prop_assert_eq!(ch.name(), name.as_str());
        let rebuilt = if ch.namespace().is_empty() { ch.name().to_owned() } else { format!("{}:{}", ch.namespace(), ch.name()) };
        prop_assert_eq!(rebuilt, s);
    }

    #[test]
    fn a_forbidden_character_anywhere_is_refused_at_its_byte(
        (ns, name) in valid_channel(),
        c in forbidden_char(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut s = join(&ns, &name);
        let at = at.index(s.len() + 1);
        s.insert(at, c);
        prop_assert_eq!(Channel::parse(&s), Err(ChannelError::BadCharacter(at)), "{:?}", s);
    }
}
