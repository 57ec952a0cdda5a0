//! Dependency injection: the shaku module that wires the local store and the repositories.
//!
//! Async and fallible setup (opening the database, running migrations) happens first, in
//! [`open_local_module`]; the module is then built from ready parts and cannot fail.

use anyhow::Context;
use shaku::module;
use std::{path::Path, sync::Arc};
use trackflow_data::{
    local::{
        SqliteAudioCommentRepositoryParameters, SqliteAudioTrackRepositoryParameters,
        SqliteCollaboratorRepositoryParameters, SqlitePendingOperationsRepositoryParameters,
        SqlitePlaylistRepositoryParameters, SqliteProjectRepositoryParameters,
        SqliteSessionStorageParameters, SqliteUserProfileRepositoryParameters,
    },
    local::{SqliteConflictRepositoryParameters, SqliteDownstreamRepositoryParameters},
    HttpRemote, LocalStore, LocalStoreOptions, RemoteOptions, SessionReload, SqliteAudioCommentRepository,
    SqliteAudioTrackRepository, SqliteCollaboratorRepository, SqliteConflictRepository,
    SqliteDownstreamRepository, SqlitePendingOperationsRepository, SqlitePlaylistRepository,
    SqliteProjectRepository, SqliteSessionStorage, SqliteUserProfileRepository, SystemClock,
};

/// The file name of the local database inside the data directory.
pub const DATABASE_FILE: &str = "trackflow.db";

/// Everything a client needs to work offline: the clock, the repositories, the outbox and the
/// session, all over one local store. Build it with [`local_module`].
pub use generated::LocalModule;

mod generated {
    // shaku's macro generates items without doc comments.
    #![allow(missing_docs)]
    use super::*;

    module! {
        pub LocalModule {
            components = [
                SystemClock,
                SqliteProjectRepository,
                SqliteAudioTrackRepository,
                SqliteAudioCommentRepository,
                SqliteUserProfileRepository,
                SqlitePlaylistRepository,
                SqliteCollaboratorRepository,
                SqlitePendingOperationsRepository,
                SqliteSessionStorage,
                SqliteConflictRepository,
                SqliteDownstreamRepository,
                SessionReload,
                HttpRemote,
            ],
            providers = []
        }
    }
}

/// Builds the module over an opened store.
pub fn local_module(store: &LocalStore) -> anyhow::Result<LocalModule> {
    let remote = HttpRemote::parameters(&RemoteOptions::default()).context("building the HTTP client")?;
    Ok(LocalModule::builder()
        .with_component_parameters::<SqliteProjectRepository>(SqliteProjectRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteAudioTrackRepository>(SqliteAudioTrackRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteAudioCommentRepository>(SqliteAudioCommentRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteUserProfileRepository>(SqliteUserProfileRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqlitePlaylistRepository>(SqlitePlaylistRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteCollaboratorRepository>(SqliteCollaboratorRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqlitePendingOperationsRepository>(
            SqlitePendingOperationsRepositoryParameters { store: store.clone() },
        )
        .with_component_parameters::<SqliteSessionStorage>(SqliteSessionStorageParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteConflictRepository>(SqliteConflictRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<SqliteDownstreamRepository>(SqliteDownstreamRepositoryParameters {
            store: store.clone(),
        })
        .with_component_parameters::<HttpRemote>(remote)
        .build())
}

/// Opens (creating and migrating if needed) the database in `data_dir` and builds the module.
pub async fn open_local_module(data_dir: &Path) -> anyhow::Result<LocalModule> {
    let store = open_store(data_dir).await?;
    local_module(&store)
}

/// Opens the database in `data_dir`.
pub async fn open_store(data_dir: &Path) -> anyhow::Result<LocalStore> {
    let path = data_dir.join(DATABASE_FILE);
    LocalStore::open(LocalStoreOptions::new(&path), Arc::new(SystemClock))
        .await
        .with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shaku::HasComponent;
    use trackflow_domain::{
        ports::{PendingOperationsRepository, ProjectRepository},
        Project, Timestamp, UserId,
    };

    #[tokio::test]
    async fn the_module_resolves_repositories_that_share_one_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let module = open_local_module(dir.path()).await.expect("module");
        let projects: Arc<dyn ProjectRepository> = module.resolve();
        let outbox: Arc<dyn PendingOperationsRepository> = module.resolve();
        let p = Project::new(UserId::new(), "Wired", None, Timestamp(1)).expect("valid");
        projects.create(p).await.expect("create");
        assert_eq!(outbox.counts().await.expect("counts").pending, 1);
    }
}
