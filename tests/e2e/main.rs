//! End-to-end tests over real TCP: a real node (`switchboard dev`'s code path), real
//! WebSocket clients, real gRPC. One binary, one module per concern.

mod auth;
mod bad_input;
mod balance;
mod bench;
mod cli;
mod cluster;
mod delivery;
mod docs;
mod faults;
mod grpc_api;
mod history;
mod hostile;
mod interest;
mod limits;
mod metrics;
mod nats_bus;
mod nats_faults;
mod nats_kit;
mod nats_security;
mod page;
mod presence;
mod recovery;
mod slow_bus;
mod soak;
mod tls;
