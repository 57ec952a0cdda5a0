//! One `OperationExecutor` per entity type, found by the entity type's stable name.
//!
//! An executor turns a queued operation into the mutation sent to the server, checking it
//! against its entity type first: an operation that could never be applied (fields the type
//! does not have, a create that does not make a valid entity) is refused here, permanently,
//! instead of making the server refuse the whole batch it travels in.
//!
//! Every registered entity type gets its [`EntityExecutor`], made from its declaration: adding
//! a type touches nothing here.

use std::collections::HashMap;
use trackflow_domain::{entities::AnyEntity, protocol::Mutation, EntityType, OperationKind, SyncOperation};

/// Why an operation cannot be executed. Every variant is permanent: retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// No executor is registered under this entity type name.
    #[error("unknown entity type '{0}'")]
    UnknownEntityType(String),
    /// The operation does not fit its entity type.
    #[error("invalid {entity_type} operation: {reason}")]
    Invalid {
        /// The entity type.
        entity_type: EntityType,
        /// What is wrong, naming the field.
        reason: String,
    },
}

impl ExecutorError {
    /// Always true: see the type's docs.
    pub fn is_permanent(&self) -> bool {
        true
    }
}

/// Sends one entity type's operations.
pub trait OperationExecutor: Send + Sync {
    /// The entity type this executor handles.
    fn entity_type(&self) -> EntityType;

    /// The mutation that carries `op` to the server, after checking `op` against the type.
    fn prepare(&self, op: &SyncOperation) -> Result<Mutation, ExecutorError>;
}

/// The executor of one entity type: its checks come from the type's declared fields and its
/// validating `from_fields`, read through the type's [`EntityType`].
#[derive(Debug, Clone, Copy)]
pub struct EntityExecutor(EntityType);

impl EntityExecutor {
    /// The executor of `entity_type`.
    pub fn new(entity_type: EntityType) -> Self {
        Self(entity_type)
    }
}

impl OperationExecutor for EntityExecutor {
    fn entity_type(&self) -> EntityType {
        self.0
    }

    fn prepare(&self, op: &SyncOperation) -> Result<Mutation, ExecutorError> {
        let entity_type = self.0;
        let invalid = |reason: String| ExecutorError::Invalid { entity_type, reason };
        if op.entity.entity_type != entity_type {
            return Err(invalid(format!("the operation is for a {}", op.entity.entity_type)));
        }
        if let Some(unknown) = op.changed_fields.keys().find(|name| !entity_type.declares(name)) {
            return Err(invalid(format!("unknown field '{unknown}'")));
        }
        match op.kind {
            OperationKind::Create => {
                let values = op.changed_fields.iter().map(|(k, c)| (k.clone(), c.value.clone())).collect();
                AnyEntity::from_fields(entity_type, op.entity.id, &values)
                    .map_err(|e| invalid(e.to_string()))?;
            }
            OperationKind::Update if op.changed_fields.is_empty() => {
                return Err(invalid("an update that changes nothing".into()));
            }
            OperationKind::Update | OperationKind::Delete => {}
            OperationKind::Upload => {
                return Err(invalid("an upload is not a mutation: the processor streams its file".into()));
            }
        }
        Ok(Mutation::from(op))
    }
}

/// Executors by entity type name.
pub struct ExecutorRegistry {
    executors: HashMap<&'static str, Box<dyn OperationExecutor>>,
}

impl ExecutorRegistry {
    /// A registry with no executors.
    pub fn empty() -> Self {
        Self { executors: HashMap::new() }
    }

    /// A registry holding the executor of every registered entity type.
    pub fn with_registered_entities() -> Self {
        let mut registry = Self::empty();
        for &entity_type in EntityType::all() {
            registry.register(Box::new(EntityExecutor::new(entity_type)));
        }
        registry
    }

    /// Registers `executor` under its entity type's name, replacing any before it.
    pub fn register(&mut self, executor: Box<dyn OperationExecutor>) {
        self.executors.insert(executor.entity_type().as_str(), executor);
    }

    /// The executor for the entity type named `name`.
    pub fn get(&self, name: &str) -> Result<&dyn OperationExecutor, ExecutorError> {
        self.executors
            .get(name)
            .map(Box::as_ref)
            .ok_or_else(|| ExecutorError::UnknownEntityType(name.to_owned()))
    }

    /// Prepares `op` with its entity type's executor.
    pub fn prepare(&self, op: &SyncOperation) -> Result<Mutation, ExecutorError> {
        self.get(op.entity.entity_type.as_str())?.prepare(op)
    }
}

impl Default for ExecutorRegistry {
    fn default() -> Self {
        Self::with_registered_entities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trackflow_domain::SyncEntity;
    use trackflow_domain::{EntityRef, Hlc, NodeId, Timestamp, UserId};
    use trackflow_music::{AudioTrack, Project};

    fn op(entity: EntityRef, kind: OperationKind, fields: Vec<(&str, serde_json::Value)>) -> SyncOperation {
        let hlc = Hlc { wall_ms: 1, counter: 0, node: NodeId::new() };
        let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        SyncOperation::new(entity, kind, fields, hlc, 0, vec![], Timestamp(0))
    }

    #[test]
    fn every_entity_type_has_an_executor_under_its_name() {
        trackflow_music::install().expect("the music registry installs");
        let registry = ExecutorRegistry::default();
        for &entity_type in EntityType::all() {
            assert_eq!(registry.get(entity_type.as_str()).map(|e| e.entity_type()), Ok(entity_type));
        }
        assert_eq!(
            registry.get("no_such_entity").err(),
            Some(ExecutorError::UnknownEntityType("no_such_entity".into())),
            "an unknown name is a permanent error"
        );
    }

    #[test]
    fn operations_are_checked_against_their_type() {
        trackflow_music::install().expect("the music registry installs");
        let registry = ExecutorRegistry::default();
        let project = Project::new(UserId::new(), "Demo", None, Timestamp(1)).expect("valid");
        let it = project.entity_ref();
        let all: Vec<_> = project.fields().into_iter().collect();
        let create =
            op(it, OperationKind::Create, all.iter().map(|(k, v)| (k.as_str(), v.clone())).collect());
        let prepared = registry.prepare(&create).expect("a valid create");
        assert_eq!(
            (prepared.id, prepared.entity_id, prepared.kind),
            (create.id, it.id, OperationKind::Create)
        );

        // (case, operation, what the error mentions)
        let cases = [
            ("unknown field", op(it, OperationKind::Update, vec![("colour", json!("red"))]), "colour"),
            ("create missing a field", op(it, OperationKind::Create, vec![("name", json!("x"))]), "required"),
            (
                "invalid value",
                op(it, OperationKind::Create, {
                    let mut f: Vec<_> = all.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    f.retain(|(k, _)| *k != "name");
                    f.push(("name", json!("")));
                    f
                }),
                "name",
            ),
            ("empty update", op(it, OperationKind::Update, vec![]), "changes nothing"),
        ];
        for (case, operation, mentions) in cases {
            let error = registry.prepare(&operation).expect_err(case);
            assert!(error.is_permanent() && error.to_string().contains(mentions), "{case}: {error}");
        }
        let delete = op(it, OperationKind::Delete, vec![]);
        assert!(registry.prepare(&delete).is_ok());
    }

    #[test]
    fn an_executor_refuses_another_types_operation() {
        trackflow_music::install().expect("the music registry installs");
        let track_executor = EntityExecutor::new(AudioTrack::ENTITY_TYPE);
        let project = EntityRef::new(Project::ENTITY_TYPE, uuid::Uuid::nil());
        let error =
            track_executor.prepare(&op(project, OperationKind::Delete, vec![])).expect_err("wrong type");
        assert!(error.to_string().contains("for a project"), "{error}");
    }
}
