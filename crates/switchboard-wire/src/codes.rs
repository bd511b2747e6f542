//! The close code and error code tables. docs/protocol.md repeats them; a test keeps the two
//! in step.

/// A WebSocket close code the server sends, with whether the client should reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    pub code: u16,
    /// Short machine-friendly reason, sent as the close reason (fits the 123-byte limit).
    pub reason: &'static str,
    /// Whether a client should reconnect (with backoff) after this close.
    pub reconnect: bool,
    /// One line for the documentation.
    pub description: &'static str,
}

macro_rules! close_codes {
    ($($name:ident = $code:literal, $reason:literal, $reconnect:literal, $doc:literal;)*) => {
        impl CloseCode {
            $(
                #[doc = $doc]
                pub const $name: CloseCode = CloseCode {
                    code: $code, reason: $reason, reconnect: $reconnect, description: $doc,
                };
            )*
            /// Every close code the server sends, in code order.
            pub const ALL: &'static [CloseCode] = &[$(CloseCode::$name),*];
        }
    };
}

close_codes! {
    NORMAL = 1000, "normal", false, "The session ended normally (the client closed it).";
    GOING_AWAY = 1001, "going away", true, "The server is shutting down; reconnect, to another node if possible.";
    PROTOCOL_ERROR = 1002, "protocol error", false, "The peer broke RFC 6455 framing (unmasked frame, bad opcode, fragmented control frame).";
    UNSUPPORTED_DATA = 1003, "unsupported data", false, "A binary frame on the JSON protocol, or a text frame on the protobuf protocol.";
    INVALID_PAYLOAD = 1007, "invalid payload", false, "A text frame that is not valid UTF-8.";
    MESSAGE_TOO_BIG = 1009, "message too big", false, "A message larger than the configured maximum (`--max-message-size`).";
    INTERNAL = 4000, "internal error", true, "An unexpected server error; reconnect with backoff.";
    SHUTDOWN = 4001, "shutdown", true, "The node is draining; reconnect, the load balancer picks another node.";
    SLOW_CONSUMER = 4002, "slow consumer", true, "The session's outbound queue overflowed (it read too slowly); reconnect.";
    CONNECT_TIMEOUT = 4003, "connect timeout", true, "No connect command arrived within the handshake timeout.";
    NO_PONG = 4004, "no pong", true, "The client sent nothing within the pong timeout after a server ping.";
    DISCONNECTED = 4005, "disconnected", true, "Disconnected by a backend (the default code of the Disconnect API); may reconnect.";
    TOKEN_EXPIRED = 4006, "token expired", true, "The connect token expired without a `refresh`; reconnect with a fresh token.";
    TOO_MANY_CONNECTIONS = 4007, "too many connections", true, "The user already holds `--max-connections-per-user` sessions on this gateway; reconnect with backoff (it succeeds once one of them ends).";
    RATE_LIMITED = 4008, "rate limited", true, "The client kept sending at more than twice its message or byte rate (`--max-messages-per-sec`, `--max-bytes-per-sec`); reconnect with backoff.";
    REBALANCE = 4009, "rebalance", true, "This gateway holds more than its share of the cluster's sessions and asked some to move; reconnect at once, the load balancer picks a node (recovery resumes every channel).";
    BAD_REQUEST = 4500, "bad request", false, "A frame that is not a command at all (malformed JSON or protobuf); reconnecting would repeat it.";
    UNAUTHORIZED = 4501, "unauthorized", false, "The connect token was rejected.";
    FORCE_DISCONNECT = 4503, "force disconnect", false, "Disconnected by a backend, which asked the client not to reconnect.";
}

impl CloseCode {
    /// The table entry for `code`, if the server sends it.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.iter().copied().find(|c| c.code == code)
    }

    /// Whether a client should reconnect after `code`: per the table when known; for other
    /// application codes, 4000–4499 reconnect and 4500–4999 do not.
    pub fn should_reconnect(code: u16) -> bool {
        match CloseCode::from_code(code) {
            Some(c) => c.reconnect,
            None => (4000..4500).contains(&code) || code == 1001 || code == 1006 || code == 1011,
        }
    }
}

/// An error code in a command's error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    /// Whether repeating the command later may succeed.
    pub temporary: bool,
}

macro_rules! error_codes {
    ($($name:ident = $code:literal, $msg:literal, $temporary:literal;)*) => {
        impl ErrorCode {
            $(
                #[doc = $msg]
                pub const $name: ErrorCode = ErrorCode { code: $code, message: $msg, temporary: $temporary };
            )*
            /// Every error code, in code order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];
        }
    };
}

error_codes! {
    INTERNAL = 100, "internal error", true;
    UNKNOWN_COMMAND = 101, "unknown command", false;
    BAD_REQUEST = 102, "bad request", false;
    PERMISSION_DENIED = 103, "permission denied", false;
    INVALID_CHANNEL = 104, "invalid channel name", false;
    NOT_CONNECTED = 105, "connect first", false;
    ALREADY_CONNECTED = 106, "already connected", false;
    ALREADY_SUBSCRIBED = 107, "already subscribed", false;
    NOT_SUBSCRIBED = 108, "not subscribed", false;
    LIMIT_EXCEEDED = 109, "limit exceeded", false;
    UNAVAILABLE = 110, "temporarily unavailable", true;
    BACKEND_ERROR = 111, "backend error", false;
    TIMEOUT = 112, "timeout", true;
    NO_HISTORY = 113, "the channel keeps no history", false;
    NO_PRESENCE = 114, "the channel's namespace has no presence", false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        for c in CloseCode::ALL {
            assert!(c.reason.len() <= 123, "{}", c.code);
        }
    }

    #[test]
    fn codes_are_unique_and_sorted() {
        let close: Vec<u16> = CloseCode::ALL.iter().map(|c| c.code).collect();
        assert!(close.windows(2).all(|w| w[0] < w[1]));
        let err: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.code).collect();
        assert!(err.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn application_codes_follow_the_reconnect_ranges() {
        for c in CloseCode::ALL.iter().filter(|c| c.code >= 4000) {
            assert_eq!(c.reconnect, c.code < 4500, "{}", c.code);
        }
        assert!(CloseCode::should_reconnect(4321));
        assert!(!CloseCode::should_reconnect(4999));
    }

    #[test]
    fn docs_protocol_lists_every_code() {
        let doc = include_str!("../../../docs/protocol.md");
        for c in CloseCode::ALL {
            let yes_no = if c.reconnect { "yes" } else { "no" };
            let row = format!("| {} | {} | {} |", c.code, c.reason, yes_no);
            assert!(doc.lines().any(|l| l.starts_with(&row)), "docs/protocol.md has no close code row `{row}`");
        }
        for e in ErrorCode::ALL {
            let start = format!("| {} |", e.code);
            assert!(
                doc.lines().any(|l| l.starts_with(&start) && l.contains(e.message)),
                "docs/protocol.md has no error code row `{start}` containing {:?}",
                e.message
            );
        }
    }
}
