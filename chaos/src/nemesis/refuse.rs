//! `asymmetric_refuse`: the leader resets every new connection to its ports
//! while the connections it has keep flowing. A leader that still reaches
//! every follower should keep leading: its followers' leader probes see the
//! refusals, and a probe that deposed it would be wrong. Whether it did is
//! reported, not required: a leader that is not sending AppendEntries at the
//! time (one restarted a moment ago, say) is rightly replaced, and nothing
//! here can tell the two apart.

use std::time::Duration;

use tokio::time::Instant;

use super::schedule::{FaultKind, RefusedPorts};
use super::{outcome, Nemesis, Observation};
use crate::hosts::{HTTP_PORT, RAFT_PORT};

/// Who leads, in which term, as a node answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<u64>,
    pub term: u64,
}

impl Leadership {
    /// Whether a node's answer shows that `self` was deposed: a higher term
    /// (a new election, whoever won it, even the same node). An answer in
    /// an older term is a lagging node's, not a change.
    pub fn deposed_by(self, answer: Leadership) -> Option<Leadership> {
        (answer.term > self.term).then_some(answer)
    }
}

impl Nemesis {
    pub(super) async fn asymmetric_refuse(&mut self, ports: RefusedPorts, leader: Option<u64>, hold: Duration) {
        let kind = FaultKind::AsymmetricRefuse;
        let status = match leader {
            Some(leader) => self.nodes.status(leader).await.map(|s| (leader, s)),
            None => None,
        };
        let Some((target, status)) = status else {
            self.record(kind, "skipped", vec![], "no leader answered");
            return;
        };
        let before = Leadership { leader: Some(target), term: status.current_term };
        let refused = match ports {
            RefusedPorts::Raft => vec![RAFT_PORT],
            RefusedPorts::RaftAndHttp => vec![RAFT_PORT, HTTP_PORT],
        };
        let result = self.nodes.hosts.refuse_new_connections(target, &refused).await;
        self.record(
            kind,
            "start",
            vec![target],
            format!(
                "new connections to ports {refused:?} of leader {target} (term {}) reset{}",
                before.term,
                outcome(result)
            ),
        );
        let changed = self.watch_leadership(before, hold).await;
        let healed = self.nodes.hosts.heal().await;
        let detail = match changed {
            None => format!("rule removed{}; leader {target} kept term {} throughout", outcome(healed), before.term),
            Some(after) => format!(
                "rule removed{}; leadership CHANGED during the fault: term {} -> {}, leader {target} -> {}",
                outcome(healed),
                before.term,
                after.term,
                after.leader.map_or_else(|| "none yet".to_string(), |leader| leader.to_string())
            ),
        };
        let kept = Observation::reported("leader_kept", changed.is_none());
        self.record_observed(kind, "heal", vec![target], detail, vec![kept]);
    }

    /// Asks every node who leads until `hold` is over; returns the first
    /// change seen.
    async fn watch_leadership(&self, before: Leadership, hold: Duration) -> Option<Leadership> {
        let until = Instant::now() + hold;
        let mut changed = None;
        while Instant::now() < until {
            for id in self.nodes.ids() {
                let Some(status) = self.nodes.status(id).await else { continue };
                if changed.is_none() {
                    let answer = Leadership { leader: status.current_leader, term: status.current_term };
                    changed = before.deposed_by(answer);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::Leadership;

    #[test]
    fn only_a_higher_term_deposes_the_leader() {
        let before = Leadership { leader: Some(2), term: 5 };
        let answer = |leader, term| Leadership { leader, term };
        assert_eq!(before.deposed_by(answer(Some(2), 5)), None);
        assert_eq!(before.deposed_by(answer(None, 5)), None, "a node that has not heard from the leader yet");
        assert_eq!(before.deposed_by(answer(Some(1), 4)), None, "a lagging node names an older leader");
        assert_eq!(before.deposed_by(answer(None, 6)), Some(answer(None, 6)), "an election under way");
        assert_eq!(before.deposed_by(answer(Some(3), 6)), Some(answer(Some(3), 6)));
        assert_eq!(before.deposed_by(answer(Some(2), 7)), Some(answer(Some(2), 7)), "re-elected, but deposed first");
    }
}
