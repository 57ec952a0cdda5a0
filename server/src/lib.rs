//! # trackflow-server
//!
//! The reference TrackFlow sync server: axum over a server-store port, with the store on SQLite
//! by default and PostgreSQL for scale-out; sign-up and log-in, authorization per project role,
//! idempotent push, cursor pull, health and an OpenAPI description.
//!
//! Today it holds nothing but this description; it depends on the domain only.

pub use trackflow_domain::protocol;
