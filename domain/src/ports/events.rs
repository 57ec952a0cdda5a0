use crate::{ports::RemoteError, protocol::Poke};
use async_trait::async_trait;
use shaku::Interface;

/// What the server's event stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The stream is open. Whatever changed while it was not is unknown: pull.
    Ready,
    /// Something the user may read changed.
    Poke(Poke),
}

/// The server's event stream (`GET /v1/events`), as the client reaches it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EventSource: Interface {
    /// Opens the signed-in user's stream.
    async fn connect(&self) -> Result<Box<dyn EventStream>, RemoteError>;
}

/// One open event stream.
#[async_trait]
pub trait EventStream: Send {
    /// The next event; `None` when the server ended the stream. An error means the stream is
    /// gone (cut, or unreadable).
    async fn next(&mut self) -> Option<Result<ServerEvent, RemoteError>>;
}
