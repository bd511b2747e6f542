//! The `switchboard` binary's library: the command line, the `dev` node, and the client
//! tools. Kept as a library so the end-to-end tests start exactly what the binary starts.

pub mod cli;
pub mod dev;
pub mod duration;
pub mod tools;
