//! Typed identifiers. Every id is a UUID v7 generated on the client, so offline creates need no
//! server round trip and ids sort by creation time.

use std::fmt;
use uuid::Uuid;

/// The error for a string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id '{input}': expected a UUID")]
pub struct ParseIdError {
    /// Which kind of id was expected (`project`, `audio track`, ...).
    pub kind: &'static str,
    /// The text that failed to parse.
    pub input: String,
}

/// Declares a typed id: a UUID v7 newtype with `new`, `from_uuid`, `as_uuid`, `Display`,
/// `FromStr` (errors name `$kind`) and serde as the bare UUID. The crate invoking it needs serde
/// (with `derive`) among its dependencies, as its entity types do.
///
/// ```
/// trackflow_domain::typed_id!(
///     /// Identifies a board.
///     BoardId, "board"
/// );
/// let id = BoardId::new();
/// assert_eq!(id.to_string().parse::<BoardId>(), Ok(id));
/// ```
#[macro_export]
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name($crate::__private::Uuid);

        impl $name {
            /// What this id names, for messages.
            pub const KIND: &'static str = $kind;

            /// A fresh, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self($crate::__private::Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: $crate::__private::Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> $crate::__private::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::__private::Uuid::parse_str(s.trim()).map(Self).map_err(|_| $crate::ids::ParseIdError {
                    kind: $kind,
                    input: s.to_owned(),
                })
            }
        }

        impl ::std::convert::From<$name> for $crate::__private::Uuid {
            fn from(id: $name) -> $crate::__private::Uuid {
                id.0
            }
        }

        impl ::std::convert::From<$crate::__private::Uuid> for $name {
            fn from(uuid: $crate::__private::Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

/// What generic code needs of an entity's typed id: a UUID inside, shown as one.
pub trait EntityId:
    Copy + Eq + fmt::Debug + fmt::Display + From<Uuid> + Into<Uuid> + Send + Sync + 'static
{
}

impl<T> EntityId for T where
    T: Copy + Eq + fmt::Debug + fmt::Display + From<Uuid> + Into<Uuid> + Send + Sync + 'static
{
}

typed_id!(
    /// Identifies a user (an account, and the owner of a user scope).
    UserId, "user"
);
typed_id!(
    /// Identifies a shared [`crate::entities::Scope`]: the id of the entity at its root (a
    /// project, a board).
    ScopeId, "scope"
);
typed_id!(
    /// Identifies an outbox [`crate::SyncOperation`]; it is also the idempotency key of the
    /// mutation sent to the server.
    OperationId, "operation"
);
typed_id!(
    /// Identifies a stored [`crate::SyncConflict`].
    ConflictId, "conflict"
);
typed_id!(
    /// Identifies one replica (a client database or the server) in hybrid logical clock
    /// timestamps; it breaks ties between equal clock readings.
    NodeId, "node"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_time_ordered() {
        let a = OperationId::new();
        let b = OperationId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b, "UUID v7 ids generated in sequence sort in sequence");
    }

    #[test]
    fn parse_round_trips_and_names_the_kind_on_error() {
        let id = ScopeId::new();
        assert_eq!(id.to_string().parse::<ScopeId>(), Ok(id));
        let err = "not-a-uuid".parse::<ScopeId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid scope id 'not-a-uuid': expected a UUID");
    }
}
