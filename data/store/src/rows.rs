//! A record (an entity with its sync metadata) and the helpers that turn stored text into
//! values, naming the table in every error. How records map onto an entity table's columns is
//! in [`super::tables`].

use std::{fmt::Display, str::FromStr};
use trackflow_db::error::{StoreError, StoreResult};
use trackflow_domain::SyncMeta;

/// An entity with its sync metadata, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<E> {
    pub entity: E,
    pub meta: SyncMeta,
}

pub(crate) fn parse<T>(table: &'static str, text: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|e| StoreError::corrupt(table, e))
}

pub(crate) fn to_json<T: serde::Serialize>(table: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(table, e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(table: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(table, e))
}
