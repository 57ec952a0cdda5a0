//! HTTP tests: the real server on port 0, driven by a real HTTP client (reqwest).
//!
//! Every test gets its own in-memory SQLite store. Logs appear with `TRACKFLOW_TEST_LOG=debug`.

mod harness;

mod api;
mod bad_input;
mod blobs;
mod events;
mod openapi;
mod remote;
mod store_contract;
