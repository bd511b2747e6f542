//! Bounds on the identifiers that travel inside bus subjects (user ids from connect
//! tokens, session ids from the API). NATS drops a connection that sends a protocol line
//! over 4,096 bytes, so an id that nobody bounded could cut a node off its bus; these are
//! checked where the ids enter (the gateway's connect, control's API), well below what the
//! bus's subject builder would refuse.

/// Longest user id (a token's `sub`), in bytes. A gateway may be configured lower
/// (`max_user_id_len`), never higher.
pub const MAX_USER_ID_LEN: usize = 256;

/// Longest session id the API accepts, in bytes. Gateways make ids of at most 150 bytes
/// (a node id of at most 128, a `-`, a boot tag and a counter).
pub const MAX_SESSION_ID_LEN: usize = 256;
