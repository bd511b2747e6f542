//! Commands for sessions, carried to gateways as `GatewayCommand`s: to one session on its
//! gateway's node subject (a request: the gateway answers how many sessions it reached),
//! or to every session of a user on the user subject (fire and forget).
//!
//! A session id names its gateway: `{gateway}-{id}`, split at the last `-`.

use switchboard_bus::{Address, BusError, Message};
use switchboard_wire::ids::{MAX_SESSION_ID_LEN, MAX_USER_ID_LEN};
use switchboard_wire::pb::server_subscribe_request;
use switchboard_wire::pb::{self, disconnect_request, gateway_command::Action, gateway_command::Target};
use tonic::Status;

use super::{Api, bus_status, parse_channel};

/// The close code a disconnect gets when the request leaves it 0 (reconnect allowed).
pub const DEFAULT_DISCONNECT_CODE: u32 = 4005;
/// The longest close reason: what fits a WebSocket close frame.
pub const MAX_REASON_BYTES: usize = 123;

/// Whom a command is for.
enum To {
    Session(String),
    User(String),
}

// === impl Api ===

impl Api {
    pub(super) async fn send_session(&self, req: pb::SendToSessionRequest) -> Result<pb::SendResponse, Status> {
        let sessions = self.command(To::Session(req.session), Action::Send(req.data)).await?;
        Ok(pb::SendResponse { sessions })
    }

    pub(super) async fn send_user(&self, req: pb::SendToUserRequest) -> Result<pb::SendResponse, Status> {
        let sessions = self.command(To::User(req.user), Action::Send(req.data)).await?;
        Ok(pb::SendResponse { sessions })
    }

    pub(super) async fn close(&self, req: pb::DisconnectRequest) -> Result<pb::DisconnectResponse, Status> {
        let to = match req.target {
            Some(disconnect_request::Target::Session(s)) => To::Session(s),
            Some(disconnect_request::Target::User(u)) => To::User(u),
            None => return Err(Status::invalid_argument("target (session or user) is required")),
        };
        let code = match req.code {
            0 => DEFAULT_DISCONNECT_CODE,
            c @ 4000..=4999 => c,
            c => return Err(Status::invalid_argument(format!("code {c} is outside 4000..=4999"))),
        };
        if req.reason.len() > MAX_REASON_BYTES {
            return Err(Status::invalid_argument(format!("reason is longer than {MAX_REASON_BYTES} bytes")));
        }
        self.command(to, Action::Disconnect(pb::DisconnectAction { code, reason: req.reason })).await?;
        Ok(pb::DisconnectResponse {})
    }

    pub(super) async fn server_subscribe(
        &self,
        req: pb::ServerSubscribeRequest,
        subscribe: bool,
    ) -> Result<pb::ServerSubscribeResponse, Status> {
        let to = match req.target {
            Some(server_subscribe_request::Target::Session(s)) => To::Session(s),
            Some(server_subscribe_request::Target::User(u)) => To::User(u),
            None => return Err(Status::invalid_argument("target (session or user) is required")),
        };
        let channel = parse_channel(&req.channel)?.to_string();
        self.command(to, if subscribe { Action::Subscribe(channel) } else { Action::Unsubscribe(channel) }).await?;
        Ok(pb::ServerSubscribeResponse {})
    }

    /// Sends `action` to its target; returns how many sessions it reached (0 for a user:
    /// not counted).
    async fn command(&self, to: To, action: Action) -> Result<u32, Status> {
        match to {
            To::Session(session) => {
                let gateway = session_gateway(&session)?.to_owned();
                let command = pb::GatewayCommand { target: Some(Target::Session(session)), action: Some(action) };
                let address = Address::Node(gateway.as_str().into());
                let timeout = self.shared.config.query_timeout;
                let reply = match self.shared.bus.request(&address, Message::proto(&command), timeout).await {
                    Ok(reply) => reply,
                    Err(BusError::NoResponders) => return Err(not_connected()),
                    Err(BusError::Timeout) => {
                        return Err(Status::deadline_exceeded(format!("gateway {gateway} did not answer in time")));
                    }
                    Err(e) => return Err(bus_status(e)),
                };
                let reply: pb::GatewayCommandReply =
                    reply.decode().map_err(|e| Status::internal(format!("bad reply from gateway {gateway}: {e}")))?;
                if !reply.error.is_empty() {
                    return Err(Status::failed_precondition(reply.error));
                }
                if reply.sessions == 0 {
                    return Err(not_connected());
                }
                Ok(reply.sessions)
            }
            To::User(user) => {
                check_user(&user)?;
                let address = Address::User(user.as_str().into());
                let command = pb::GatewayCommand { target: Some(Target::User(user)), action: Some(action) };
                self.shared.bus.send(&address, Message::proto(&command)).await.map_err(bus_status)?;
                Ok(0)
            }
        }
    }
}

/// The gateway a session id names.
pub(crate) fn session_gateway(session: &str) -> Result<&str, Status> {
    if session.is_empty() {
        return Err(Status::invalid_argument("session is empty"));
    }
    if session.len() > MAX_SESSION_ID_LEN {
        return Err(Status::invalid_argument(format!("session is longer than {MAX_SESSION_ID_LEN} bytes")));
    }
    match session.rsplit_once('-') {
        Some((gateway, id)) if !gateway.is_empty() && !id.is_empty() => Ok(gateway),
        _ => Err(Status::invalid_argument(format!("session {session:?} is not a session id ({{gateway}}-{{id}})"))),
    }
}

/// A user id as the API accepts it: not empty, at most [`MAX_USER_ID_LEN`] bytes.
pub(crate) fn check_user(user: &str) -> Result<(), Status> {
    if user.is_empty() {
        return Err(Status::invalid_argument("user is empty"));
    }
    if user.len() > MAX_USER_ID_LEN {
        return Err(Status::invalid_argument(format!("user is longer than {MAX_USER_ID_LEN} bytes")));
    }
    Ok(())
}

fn not_connected() -> Status {
    Status::not_found("session not connected")
}
