//! Which fault comes next: the kinds, their variants, and the rounds.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9` of a random node, restarted on its data directory.
    KillNode,
    /// `kill -9` of the leader, restarted on its data directory.
    KillLeader,
    /// SIGSTOP of the leader for longer than the election timeout, then SIGCONT.
    PauseLeader,
    /// The leader cut off from every peer (clients still reach it).
    IsolateLeader,
    /// A random majority and minority cut off from each other.
    SplitMajority,
    /// Two halves that share one node, which talks to both.
    Bridge,
    /// 30% of every node's peer packets dropped.
    PacketLoss,
    /// Every Raft RPC delayed 40-120 ms.
    Delay,
    /// A follower removed from the cluster, wiped, and added back by join.
    RemoveAndRejoin,
    /// `kill -9` of a node (a follower, or the node that founded the
    /// cluster), its data directory deleted, restarted with the same id.
    WipeAndRejoinSameId,
    /// New TCP connections to the leader refused with a reset, while
    /// established ones keep flowing.
    AsymmetricRefuse,
    /// A stopped follower falls behind the leader's purged log, then aborts
    /// in the middle of installing the snapshot it is sent.
    CrashInSnapshotInstall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillNode,
        FaultKind::KillLeader,
        FaultKind::PauseLeader,
        FaultKind::IsolateLeader,
        FaultKind::SplitMajority,
        FaultKind::Bridge,
        FaultKind::PacketLoss,
        FaultKind::Delay,
        FaultKind::RemoveAndRejoin,
        FaultKind::WipeAndRejoinSameId,
        FaultKind::AsymmetricRefuse,
        FaultKind::CrashInSnapshotInstall,
    ];

    /// Faults made of iptables rules in the nodes' namespaces.
    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Self::IsolateLeader | Self::SplitMajority | Self::Bridge | Self::PacketLoss | Self::AsymmetricRefuse
        )
    }

    /// How many variants the kind has (the first round injects each once).
    pub fn variants(self) -> u8 {
        match self {
            Self::WipeAndRejoinSameId => WipeVariant::ALL.len() as u8,
            Self::AsymmetricRefuse => RefusedPorts::ALL.len() as u8,
            _ => 1,
        }
    }

    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }
}

/// Who loses its data directory, and how it is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WipeVariant {
    /// The node that founded the cluster (`--bootstrap`) rather than a
    /// follower that joined it.
    pub seed_node: bool,
    /// Restarted with `--join` at once; otherwise first with neither
    /// `--bootstrap` nor `--join`, which must refuse to start.
    pub join: bool,
}

impl WipeVariant {
    pub const ALL: [WipeVariant; 4] = [
        WipeVariant { seed_node: false, join: true },
        WipeVariant { seed_node: false, join: false },
        WipeVariant { seed_node: true, join: true },
        WipeVariant { seed_node: true, join: false },
    ];

    pub fn name(self) -> &'static str {
        match (self.seed_node, self.join) {
            (false, true) => "follower, --join",
            (false, false) => "follower, no flags then --join",
            (true, true) => "seed node, --join",
            (true, false) => "seed node, no flags then --join",
        }
    }
}

/// Which of the leader's ports refuse new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedPorts {
    Raft,
    RaftAndHttp,
}

impl RefusedPorts {
    pub const ALL: [RefusedPorts; 2] = [RefusedPorts::Raft, RefusedPorts::RaftAndHttp];

    pub fn name(self) -> &'static str {
        match self {
            Self::Raft => "raft port",
            Self::RaftAndHttp => "raft and http ports",
        }
    }
}

/// One scheduled fault: its kind and which of its variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: FaultKind,
    pub variant: u8,
}

impl Planned {
    pub fn wipe(self) -> WipeVariant {
        WipeVariant::ALL[usize::from(self.variant) % WipeVariant::ALL.len()]
    }

    pub fn refused(self) -> RefusedPorts {
        RefusedPorts::ALL[usize::from(self.variant) % RefusedPorts::ALL.len()]
    }

    /// The variant's name, empty for kinds without variants.
    pub fn variant_name(self) -> &'static str {
        match self.kind {
            FaultKind::WipeAndRejoinSameId => self.wipe().name(),
            FaultKind::AsymmetricRefuse => self.refused().name(),
            _ => "",
        }
    }
}

/// The first round: every variant of every kind once, shuffled.
pub fn first_round(kinds: &[FaultKind], rng: &mut StdRng) -> Vec<Planned> {
    let mut round: Vec<Planned> =
        kinds.iter().flat_map(|&kind| (0..kind.variants()).map(move |variant| Planned { kind, variant })).collect();
    round.shuffle(rng);
    round
}

/// A fault of a later round: any kind, any of its variants.
pub fn random_fault(kinds: &[FaultKind], rng: &mut StdRng) -> Option<Planned> {
    let kind = *kinds.choose(rng)?;
    Some(Planned { kind, variant: rng.gen_range(0..kind.variants()) })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_first_round_holds_every_kind_and_every_variant_once() {
        for seed in 0..20 {
            let round = first_round(&FaultKind::ALL, &mut StdRng::seed_from_u64(seed));
            for kind in FaultKind::ALL {
                let variants: Vec<u8> = round.iter().filter(|p| p.kind == kind).map(|p| p.variant).collect();
                let mut sorted = variants.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..kind.variants()).collect::<Vec<_>>(), "{kind:?} with seed {seed}");
            }
            let names: Vec<&str> =
                round.iter().filter(|p| p.kind == FaultKind::WipeAndRejoinSameId).map(|p| p.variant_name()).collect();
            for wipe in WipeVariant::ALL {
                assert!(names.contains(&wipe.name()), "{} missing with seed {seed}", wipe.name());
            }
        }
    }

    #[test]
    fn without_namespaces_the_first_round_still_holds_every_other_kind() {
        let kinds: Vec<FaultKind> = FaultKind::ALL.into_iter().filter(|k| !k.needs_network()).collect();
        let round = first_round(&kinds, &mut StdRng::seed_from_u64(7));
        assert!(kinds.iter().all(|kind| round.iter().any(|p| p.kind == *kind)));
        assert!(round.iter().all(|p| !p.kind.needs_network()));
        assert!(round.iter().any(|p| p.kind == FaultKind::CrashInSnapshotInstall));
        assert!(round.iter().all(|p| p.kind != FaultKind::AsymmetricRefuse));
    }

    #[test]
    fn the_same_seed_plans_the_same_faults() {
        let plan = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut plan = first_round(&FaultKind::ALL, &mut rng);
            plan.extend((0..10).filter_map(|_| random_fault(&FaultKind::ALL, &mut rng)));
            plan
        };
        assert_eq!(plan(3), plan(3));
        assert_ne!(plan(3), plan(4));
    }

    #[test]
    fn later_faults_pick_a_variant_the_kind_has() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let planned = random_fault(&FaultKind::ALL, &mut rng).expect("kinds are not empty");
            assert!(planned.variant < planned.kind.variants());
        }
        assert_eq!(random_fault(&[], &mut rng), None);
    }
}
