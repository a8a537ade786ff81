//! Which node is where: `NodeId -> PeerAddr`, shared by every task of a node.
//!
//! The registry mirrors the Raft membership (where addresses travel in the
//! log), so a node learns every peer without outside configuration; `node/`
//! refreshes it whenever OpenRaft's metrics report a new membership.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::locks;
use crate::types::{Membership, NodeId, PeerAddr};

/// A member as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub addr: PeerAddr,
    pub voter: bool,
}

#[derive(Debug, Default)]
struct Members {
    addrs: BTreeMap<NodeId, PeerAddr>,
    voters: Vec<NodeId>,
}

/// Thread-safe, cheap to clone; clones share one map.
#[derive(Debug, Clone, Default)]
pub struct NodeRegistry {
    members: Arc<RwLock<Members>>,
}

impl NodeRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one node's addresses, until the next `sync_with`.
    pub fn insert(&self, id: NodeId, addr: PeerAddr) {
        self.write().addrs.insert(id, addr);
    }

    pub fn get(&self, id: NodeId) -> Option<PeerAddr> {
        self.read().addrs.get(&id).cloned()
    }

    /// Replaces the registry's content with `membership`'s nodes: a node that
    /// left the membership leaves the registry.
    pub fn sync_with(&self, membership: &Membership) {
        let mut members = self.write();
        members.addrs = membership.nodes().map(|(id, addr)| (*id, addr.clone())).collect();
        members.voters = membership.voter_ids().collect();
    }

    /// Every known node, ordered by id, with whether it votes.
    pub fn members(&self) -> Vec<Member> {
        let members = self.read();
        members
            .addrs
            .iter()
            .map(|(id, addr)| Member { id: *id, addr: addr.clone(), voter: members.voters.contains(id) })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Members> {
        locks::read(&self.members)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Members> {
        locks::write(&self.members)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn addr(n: u16) -> PeerAddr {
        PeerAddr {
            raft_addr: format!("10.0.0.{n}:5000"),
            http_addr: format!("10.0.0.{n}:8080"),
            incarnation: format!("{n:032x}"),
        }
    }

    fn membership(voters: &[NodeId], nodes: &[NodeId]) -> Membership {
        let nodes: BTreeMap<NodeId, PeerAddr> = nodes.iter().map(|id| (*id, addr(*id as u16))).collect();
        Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes)
    }

    #[test]
    fn insert_then_get_returns_the_addresses() {
        let registry = NodeRegistry::new();
        registry.insert(7, addr(7));
        assert_eq!(registry.get(7), Some(addr(7)));
        assert_eq!(registry.get(8), None);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn insert_overwrites_an_existing_entry() {
        let registry = NodeRegistry::new();
        registry.insert(7, addr(7));
        registry.insert(7, addr(9));
        assert_eq!(registry.get(7), Some(addr(9)));
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn sync_with_membership_lists_voters_and_learners() {
        let registry = NodeRegistry::new();
        registry.sync_with(&membership(&[1, 2], &[1, 2, 3]));
        let members = registry.members();
        assert_eq!(
            members,
            vec![
                Member { id: 1, addr: addr(1), voter: true },
                Member { id: 2, addr: addr(2), voter: true },
                Member { id: 3, addr: addr(3), voter: false },
            ]
        );
    }

    #[test]
    fn sync_with_drops_nodes_that_left_the_membership() {
        let registry = NodeRegistry::new();
        registry.insert(9, addr(9));
        registry.sync_with(&membership(&[1, 2, 3], &[1, 2, 3]));
        registry.sync_with(&membership(&[1, 2], &[1, 2]));
        assert_eq!(registry.get(3), None);
        assert_eq!(registry.get(9), None);
        assert_eq!(registry.members().iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn clones_share_state_across_threads() {
        let registry = NodeRegistry::new();
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let registry = registry.clone();
                std::thread::spawn(move || registry.insert(n, addr(n as u16)))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(registry.len(), 8);
        assert_eq!(registry.get(5), Some(addr(5)));
    }
}
