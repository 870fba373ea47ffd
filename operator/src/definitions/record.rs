//! One object of a definition kind as the cluster has it: the definition it reads as
//! (or why it does not), and its `.status`, so that only what changes is written.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::{
    Definition, DefinitionId, DefinitionKind, DefinitionResource, DefinitionStatus, KindVisitor,
};
use kube::core::DeserializeGuard;

/// One watched object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRecord {
    pub id: DefinitionId,
    pub generation: Option<i64>,
    /// The definition, or why the object could not be read as one.
    pub decoded: Result<Definition, String>,
    /// `.status` as the server has it, to write only what changes; unknown for an object
    /// that could not be read.
    pub status: Option<DefinitionStatus>,
}

impl ObjectRecord {
    /// A watched object of `kind`, or why it could not be read; `None` if it has no name
    /// (never sent by a server).
    pub fn from_guard<K: DefinitionResource>(
        kind: DefinitionKind,
        guard: DeserializeGuard<K>,
    ) -> Option<ObjectRecord> {
        match guard.0 {
            Ok(object) => {
                let definition = Definition::from_resource(kind, &object)?;
                Some(ObjectRecord {
                    id: definition.id.clone(),
                    generation: definition.generation,
                    decoded: Ok(definition),
                    status: object.definition_status(),
                })
            }
            Err(invalid) => {
                let id = DefinitionId {
                    kind,
                    namespace: invalid.metadata.namespace.clone(),
                    name: invalid.metadata.name.clone()?,
                };
                Some(ObjectRecord {
                    decoded: Err(format!("{id}: invalid spec: {}", invalid.error)),
                    id,
                    generation: invalid.metadata.generation,
                    status: None,
                })
            }
        }
    }

    /// Reads an object (as JSON) the way a watch of `kind` does.
    pub fn from_json(kind: DefinitionKind, object: &serde_json::Value) -> Option<ObjectRecord> {
        struct ReadAs<'a>(&'a serde_json::Value);
        impl KindVisitor for ReadAs<'_> {
            type Output = Option<ObjectRecord>;
            fn visit<K: DefinitionResource>(self, kind: DefinitionKind) -> Self::Output {
                let guard: DeserializeGuard<K> = serde_json::from_value(self.0.clone()).ok()?;
                ObjectRecord::from_guard(kind, guard)
            }
        }
        kind.visit(ReadAs(object))
    }
}
