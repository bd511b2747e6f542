//! The JSON command decoder on arbitrary bytes: it never panics, and what it accepts is a
//! well-formed command that encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::Encoding;

fuzz_target!(|data: &[u8]| {
    match Encoding::Json.decode_command(data) {
        Ok(cmd) => {
            assert!(cmd.id != 0 && cmd.command.is_some());
            let mut buf = Vec::new();
            Encoding::Json.encode_command(&cmd, &mut buf).expect("a decoded command encodes");
            assert_eq!(Encoding::Json.decode_command(&buf), Ok(cmd));
        }
        Err(e) => assert_ne!(e.id, Some(0)),
    }
});
