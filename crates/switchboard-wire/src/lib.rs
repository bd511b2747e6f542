//! Switchboard wire types: the generated protobuf messages and gRPC service, the client
//! protocol codec (JSON and protobuf), channel names, and the close and error code tables.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about NATS, sockets or
//! tasks. Everything that crosses a process boundary is defined here.

pub mod channel;
pub mod codes;
pub mod ids;
pub mod protocol;

pub use channel::{Channel, ChannelError};
pub use codes::{CloseCode, ErrorCode};
pub use protocol::{DecodeError, Encoding};

/// Generated protobuf messages and the gRPC service (`proto/switchboard/v1/`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_descriptor.bin"));
}
