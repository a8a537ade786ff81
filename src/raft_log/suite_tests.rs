//! OpenRaft's storage conformance suite, run against both stores.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::{FileLogStore, MemLogStore};
use crate::state_machine::GameStateMachine;
use crate::types::{StorageError, TypeConfig};

struct OnDisk;

impl StoreBuilder<TypeConfig, FileLogStore, GameStateMachine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, FileLogStore, GameStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = FileLogStore::open(&dir.path().join("raft-log")).expect("log opens");
        let state_machine = GameStateMachine::open(&dir.path().join("state")).expect("state opens");
        Ok((dir, log, state_machine))
    }
}

struct InMemory;

impl StoreBuilder<TypeConfig, MemLogStore, GameStateMachine, ()> for InMemory {
    async fn build(&self) -> Result<((), MemLogStore, GameStateMachine), StorageError> {
        Ok(((), MemLogStore::new(), GameStateMachine::in_memory()))
    }
}

#[test]
fn file_store_passes_openraft_suite() {
    Suite::test_all(OnDisk).expect("suite passes");
}

#[test]
fn memory_store_passes_openraft_suite() {
    Suite::test_all(InMemory).expect("suite passes");
}
