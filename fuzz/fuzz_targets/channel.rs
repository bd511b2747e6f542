//! The channel grammar on arbitrary strings: parsing never panics, and an accepted name is
//! its namespace and name joined again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::Channel;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(ch) = Channel::parse(s) {
        assert_eq!(ch.as_str(), s);
        let joined =
            if ch.namespace().is_empty() { ch.name().to_owned() } else { format!("{}:{}", ch.namespace(), ch.name()) };
        assert_eq!(joined, s);
        assert!(s.len() <= switchboard_wire::channel::MAX_CHANNEL_LEN);
    }
});
