//! The WebSocket layer of a session (RFC 6455), server side, after the handshake.
//!
//! fastwebsockets does the handshake (key check and accept header, see `http.rs`) and the
//! client side (`switchboard-client`). Here the gateway reads frames with [`FrameReader`],
//! which holds no buffer while a connection is idle (fastwebsockets' reader keeps 8 KiB per
//! connection allocated for its lifetime, which would dominate an idle connection's cost),
//! and writes frames that the hub has already encoded (see `switchboard_hub::frame`).

mod reader;

pub use reader::{FrameReader, Message, ReadError};
