//! Removing members the leader cannot reach (`--reap-after-ms`), so that a
//! task replaced with a fresh disk does not leave its dead predecessor a
//! voter: two such replacements would otherwise cost a 3-voter cluster its
//! quorum.
//!
//! The rule, run on the leader only, about once a second:
//!
//! 1. **Contact.** The leader probes every other member (voters and
//!    learners) with `GET /health` on its Raft port, the port its peers
//!    dial, within [`PROBE_TIMEOUT`]; an answer naming the member's node id
//!    is contact. A follower whose matched log index advances (OpenRaft's
//!    replication metrics, which have no contact times) is contact too.
//! 2. **Clocks.** Each member's clock starts when this node becomes leader
//!    (a new term) or when the member first appears, and starts again at
//!    each contact. A new leader thus observes the full duration itself.
//! 3. **Candidates.** A member silent for at least `--reap-after-ms` is a
//!    candidate; the one silent longest is taken first (ties: lowest id).
//! 4. **Limits.** A candidate voter is removed only if at least
//!    `--reap-min-voters` voters remain, and only if the voters *reachable*
//!    (this leader, and those contacted within the last
//!    [`REACHABLE_WITHIN`], or `--reap-after-ms` if shorter) are a majority
//!    of both the current voters and the voters that would remain: OpenRaft
//!    commits the change through a joint configuration that needs both, and
//!    a change that cannot commit would block every later one. A learner is
//!    removed if the reachable voters are a majority of the voters.
//! 5. **One at a time.** Removal goes through [`membership::remove`] under
//!    the lock that joins and `DELETE /nodes` take, only while no other
//!    membership change is in progress (the lock is free, the membership is
//!    committed and not joint) and unchanged since the decision; otherwise
//!    the next tick tries again. Each removal is logged once at warn.
//!
//! A candidate held back by a limit is logged once per leadership, saying
//! what would release it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::api::Forwarder;
use crate::membership;
use crate::types::{NodeId, Raft};

/// How often the leader probes the other members.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one probe may take: a member whose process is stopped
/// (SIGSTOP) or cut off accepts no request within it.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// A voter counts as reachable, for the quorum limit, if it was contacted
/// this recently (or within `--reap-after-ms`, if that is shorter).
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(3);

/// The limits of the rule (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReapRule {
    /// How long a member must stay unreachable.
    pub after: Duration,
    /// The fewest voters a removal may leave.
    pub min_voters: usize,
}

impl ReapRule {
    fn reachable_within(&self) -> Duration {
        self.after.min(REACHABLE_WITHIN)
    }
}

/// What the leader knows of one member's reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// When the clock started: this node became leader, or the member
    /// appeared.
    pub since: Instant,
    /// The last contact in this leadership, if any.
    pub last: Option<Instant>,
}

impl Contact {
    /// How long the member has been silent at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last.unwrap_or(self.since))
    }

    fn reachable(&self, now: Instant, within: Duration) -> bool {
        self.last.is_some_and(|last| now.saturating_duration_since(last) < within)
    }
}

/// A member to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reap {
    pub id: NodeId,
    pub voter: bool,
    pub silent_for: Duration,
}

/// Why a member silent for long enough stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Removing it would leave `left` voters, fewer than `min`.
    TooFewVoters { left: usize, min: usize },
    /// Only `reachable` of the `voters` voters (current or resulting) are
    /// reachable: not a majority, so the change could not commit.
    NoQuorum { reachable: usize, voters: usize },
}

/// What [`decide`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The one member to remove now, if any.
    pub reap: Option<Reap>,
    /// Candidates passed over, with why, in the order they were considered.
    pub held: Vec<(NodeId, Duration, Hold)>,
}

/// The rule of the module doc, steps 3 and 4: which member, if any, the
/// leader `own_id` removes at `now`. `contacts` holds every other member;
/// a member missing from it counts as just seen.
pub fn decide(
    own_id: NodeId,
    voters: &BTreeSet<NodeId>,
    learners: &BTreeSet<NodeId>,
    contacts: &BTreeMap<NodeId, Contact>,
    now: Instant,
    rule: &ReapRule,
) -> Verdict {
    let within = rule.reachable_within();
    let reachable = |id: &NodeId| *id == own_id || contacts.get(id).is_some_and(|c| c.reachable(now, within));
    let majority_reachable = |set: &BTreeSet<NodeId>| {
        let reached = set.iter().filter(|id| reachable(id)).count();
        (reached > set.len() / 2, reached)
    };
    let mut candidates: Vec<(NodeId, Duration)> = voters
        .iter()
        .chain(learners)
        .filter(|id| **id != own_id)
        .filter_map(|id| Some((*id, contacts.get(id)?.silent_for(now))))
        .filter(|(_, silent)| *silent >= rule.after)
        .collect();
    candidates.sort_by(|(a_id, a_silent), (b_id, b_silent)| b_silent.cmp(a_silent).then(a_id.cmp(b_id)));

    let mut verdict = Verdict::default();
    for (id, silent_for) in candidates {
        let voter = voters.contains(&id);
        let hold = if voter {
            let remaining: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let (now_ok, now_reached) = majority_reachable(voters);
            let (after_ok, after_reached) = majority_reachable(&remaining);
            if remaining.len() < rule.min_voters {
                Some(Hold::TooFewVoters { left: remaining.len(), min: rule.min_voters })
            } else if !now_ok {
                Some(Hold::NoQuorum { reachable: now_reached, voters: voters.len() })
            } else if !after_ok {
                Some(Hold::NoQuorum { reachable: after_reached, voters: remaining.len() })
            } else {
                None
            }
        } else {
            match majority_reachable(voters) {
                (true, _) => None,
                (false, reached) => Some(Hold::NoQuorum { reachable: reached, voters: voters.len() }),
            }
        };
        match hold {
            Some(hold) => verdict.held.push((id, silent_for, hold)),
            None => {
                verdict.reap = Some(Reap { id, voter, silent_for });
                break;
            }
        }
    }
    verdict
}

/// The clocks of step 2, kept across ticks.
#[derive(Debug, Default)]
pub struct ContactTracker {
    /// The term this node leads in; `None` while it does not lead.
    term: Option<u64>,
    contacts: BTreeMap<NodeId, Contact>,
    /// Each follower's matched log index as last seen.
    matched: BTreeMap<NodeId, u64>,
    /// Members whose hold was logged in this leadership.
    held_logged: BTreeSet<NodeId>,
}

impl ContactTracker {
    /// Records whether this node leads, and in which term. A new term (or
    /// the end of leading) starts every clock over.
    pub fn lead(&mut self, term: Option<u64>) {
        if self.term != term {
            self.term = term;
            self.contacts.clear();
            self.matched.clear();
            self.held_logged.clear();
        }
    }

    /// Keeps one clock per member in `ids`: a new member's starts at `now`,
    /// a member gone is forgotten.
    pub fn sync_members(&mut self, ids: &BTreeSet<NodeId>, now: Instant) {
        self.contacts.retain(|id, _| ids.contains(id));
        self.matched.retain(|id, _| ids.contains(id));
        self.held_logged.retain(|id| ids.contains(id));
        for id in ids {
            self.contacts.entry(*id).or_insert(Contact { since: now, last: None });
        }
    }

    /// Member `id` answered at `now`.
    pub fn contact(&mut self, id: NodeId, now: Instant) {
        if let Some(contact) = self.contacts.get_mut(&id) {
            contact.last = Some(now);
        }
    }

    /// The leader's replication metrics show follower `id` at `index`: an
    /// index above the one seen before is contact (the first one seen says
    /// nothing about when it was matched).
    pub fn matched(&mut self, id: NodeId, index: u64, now: Instant) {
        let before = self.matched.insert(id, index);
        if before.is_some_and(|before| index > before) {
            self.contact(id, now);
        }
    }

    pub fn contacts(&self) -> &BTreeMap<NodeId, Contact> {
        &self.contacts
    }

    /// Whether `id`'s hold should be logged: once per leadership.
    fn first_hold(&mut self, id: NodeId) -> bool {
        self.held_logged.insert(id)
    }
}

/// What the reaper needs of the node.
pub struct Reaper {
    pub raft: Raft,
    pub own_id: NodeId,
    pub rule: ReapRule,
    /// Sends the probes: its HTTP/2 client reaches peers' Raft ports, with
    /// peer TLS when the node has it.
    pub forwarder: Forwarder,
    /// Taken by joins and `DELETE /nodes`: one membership change at a time.
    pub membership_lock: Arc<tokio::sync::Mutex<()>>,
    /// How long one removal may take (`--join-timeout-ms`, as for
    /// `DELETE /nodes`).
    pub remove_timeout: Duration,
}

/// What one tick reads from Raft's metrics.
struct Seen {
    leads_in: Option<u64>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    raft_addrs: BTreeMap<NodeId, String>,
    matched: BTreeMap<NodeId, u64>,
    membership_log: Option<openraft::LogId<NodeId>>,
    stopped: bool,
}

impl Reaper {
    /// Runs the rule every [`PROBE_INTERVAL`] until Raft shuts down.
    pub async fn run(self) {
        let mut tracker = ContactTracker::default();
        let mut ticker = tokio::time::interval(PROBE_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            node_id = self.own_id,
            after = ?self.rule.after,
            min_voters = self.rule.min_voters,
            "reaping of unreachable members is on"
        );
        loop {
            ticker.tick().await;
            let seen = self.seen();
            if seen.stopped {
                return;
            }
            tracker.lead(seen.leads_in);
            if seen.leads_in.is_none() {
                continue;
            }
            let members: BTreeSet<NodeId> =
                seen.voters.iter().chain(&seen.learners).copied().filter(|id| *id != self.own_id).collect();
            tracker.sync_members(&members, Instant::now());
            for (id, index) in &seen.matched {
                tracker.matched(*id, *index, Instant::now());
            }
            for id in self.probe_all(&seen.raft_addrs).await {
                tracker.contact(id, Instant::now());
            }
            let verdict =
                decide(self.own_id, &seen.voters, &seen.learners, tracker.contacts(), Instant::now(), &self.rule);
            for (id, silent_for, hold) in &verdict.held {
                if tracker.first_hold(*id) {
                    self.log_hold(*id, *silent_for, hold);
                }
            }
            if let Some(reap) = verdict.reap {
                if !self.maybe_remove(reap, seen.membership_log).await {
                    return;
                }
            }
        }
    }

    fn seen(&self) -> Seen {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let leads = m.state == ServerState::Leader && m.current_leader == Some(self.own_id);
        let matched =
            m.replication.iter().flatten().filter_map(|(id, log_id)| Some((*id, log_id.as_ref()?.index))).collect();
        Seen {
            leads_in: leads.then_some(m.current_term),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            raft_addrs: membership.nodes().map(|(id, addr)| (*id, addr.raft_addr.clone())).collect(),
            matched,
            membership_log: *m.membership_config.log_id(),
            stopped: m.running_state.is_err() || m.state == ServerState::Shutdown,
        }
    }

    /// Probes every member but this node at once; returns those that
    /// answered as themselves.
    async fn probe_all(&self, raft_addrs: &BTreeMap<NodeId, String>) -> Vec<NodeId> {
        let mut probes = tokio::task::JoinSet::new();
        for (id, addr) in raft_addrs.iter().filter(|(id, _)| **id != self.own_id) {
            let (forwarder, id, addr) = (self.forwarder.clone(), *id, addr.clone());
            probes.spawn(async move { (forwarder.peer_health(&addr, PROBE_TIMEOUT).await == Some(id)).then_some(id) });
        }
        let mut answered = Vec::new();
        while let Some(probed) = probes.join_next().await {
            if let Ok(Some(id)) = probed {
                answered.push(id);
            }
        }
        answered
    }

    /// Removes `reap.id` unless another membership change is in progress
    /// or the membership changed since `decided_on`. Returns `false` once
    /// Raft has stopped.
    async fn maybe_remove(&self, reap: Reap, decided_on: Option<openraft::LogId<NodeId>>) -> bool {
        let Ok(_one_change_at_a_time) = self.membership_lock.try_lock() else {
            tracing::debug!(node = reap.id, "a membership change is running: reaping on a later tick");
            return true;
        };
        let settled = self
            .raft
            .with_raft_state(move |state| {
                let membership = &state.membership_state;
                let effective = membership.effective();
                effective.log_id() == membership.committed().log_id()
                    && *effective.log_id() == decided_on
                    && effective.membership().get_joint_config().len() == 1
            })
            .await;
        match settled {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(node = reap.id, "the membership is changing: reaping on a later tick");
                return true;
            }
            Err(_) => return false,
        }
        let role = if reap.voter { "voter" } else { "learner" };
        match membership::remove(&self.raft, reap.id, self.remove_timeout).await {
            Ok(()) => tracing::warn!(
                node = reap.id,
                role,
                silent_for = ?reap.silent_for,
                after = ?self.rule.after,
                "reaped an unreachable member: the leader had not reached it for --reap-after-ms, and removed \
                 it from the membership. If its process still runs, stop it; to bring it back, start it with an \
                 empty data directory (it joins as a new member)"
            ),
            Err(err) => tracing::warn!(
                node = reap.id,
                role,
                %err,
                "reaping an unreachable member failed; trying again on a later tick"
            ),
        }
        true
    }

    fn log_hold(&self, id: NodeId, silent_for: Duration, hold: &Hold) {
        match hold {
            Hold::TooFewVoters { left, min } => tracing::warn!(
                node = id,
                ?silent_for,
                left,
                min,
                "unreachable member kept: removing it would leave fewer voters than --reap-min-voters. Start a \
                 replacement (once it has joined, this member is removed) or remove it with DELETE /nodes/{id}"
            ),
            Hold::NoQuorum { reachable, voters } => tracing::warn!(
                node = id,
                ?silent_for,
                reachable,
                voters,
                "unreachable member kept: the voters this leader reaches are not a majority, so its removal \
                 could not commit. Bring the other voters back"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: ReapRule = ReapRule { after: Duration::from_secs(10), min_voters: 3 };

    fn ids(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// Clocks started at `t0`; each `(id, Some(s))` was last contacted `s`
    /// seconds after it, each `(id, None)` never.
    fn contacts(t0: Instant, of: &[(NodeId, Option<u64>)]) -> BTreeMap<NodeId, Contact> {
        of.iter()
            .map(|(id, last)| (*id, Contact { since: t0, last: last.map(|s| t0 + Duration::from_secs(s)) }))
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_voter_silent_for_the_duration_is_removed_once_enough_voters_remain() {
        let t0 = Instant::now();
        // Four voters: 4 is dead since the leader took over, 2 and 3 answer.
        let seen = contacts(t0, &[(2, Some(29)), (3, Some(29)), (4, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4]), &ids(&[]), &seen, t0 + secs(30), &RULE);
        assert_eq!(verdict.reap, Some(Reap { id: 4, voter: true, silent_for: secs(30) }));
        // Not a moment before the duration.
        let verdict = decide(1, &ids(&[1, 2, 3, 4]), &ids(&[]), &seen, t0 + secs(9), &RULE);
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn no_voter_is_removed_below_the_minimum() {
        let t0 = Instant::now();
        let seen = contacts(t0, &[(2, Some(29)), (3, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3]), &ids(&[]), &seen, t0 + secs(30), &RULE);
        assert_eq!(verdict.reap, None);
        assert_eq!(verdict.held, [(3, secs(30), Hold::TooFewVoters { left: 2, min: 3 })]);
        let two = ReapRule { min_voters: 2, ..RULE };
        let verdict = decide(1, &ids(&[1, 2, 3]), &ids(&[]), &seen, t0 + secs(30), &two);
        assert_eq!(verdict.reap, Some(Reap { id: 3, voter: true, silent_for: secs(30) }));
        // Two voters, one dead: whatever the minimum, the change would need
        // both (a joint configuration of {1, 2} and {1}), so it is held.
        let one = ReapRule { min_voters: 1, ..RULE };
        let verdict = decide(1, &ids(&[1, 2]), &ids(&[]), &contacts(t0, &[(2, None)]), t0 + secs(30), &one);
        assert_eq!(verdict.reap, None);
        assert_eq!(verdict.held, [(2, secs(30), Hold::NoQuorum { reachable: 1, voters: 2 })]);
        let alone = decide(1, &ids(&[1]), &ids(&[]), &BTreeMap::new(), t0 + secs(30), &one);
        assert_eq!(alone, Verdict::default(), "the leader never removes itself");
    }

    #[test]
    fn no_removal_unless_the_reachable_voters_are_a_majority_before_and_after() {
        let t0 = Instant::now();
        let rule = ReapRule { min_voters: 1, ..RULE };
        // Five voters, 4 and 5 silent, 3 last heard 20 s ago (not
        // reachable): 1 and 2 are not a majority of 5.
        let seen = contacts(t0, &[(2, Some(29)), (3, Some(10)), (4, None), (5, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4, 5]), &ids(&[]), &seen, t0 + secs(30), &rule);
        assert_eq!(verdict.reap, None);
        assert_eq!(verdict.held.first(), Some(&(4, secs(30), Hold::NoQuorum { reachable: 2, voters: 5 })));
        // 3 answers again: 1, 2, 3 are a majority of 5 and of the 4 left.
        let seen = contacts(t0, &[(2, Some(29)), (3, Some(29)), (4, None), (5, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4, 5]), &ids(&[]), &seen, t0 + secs(30), &rule);
        assert_eq!(verdict.reap.map(|r| r.id), Some(4));
        // Four voters, 3 and 4 silent: 1 and 2 are half, not a majority.
        let seen = contacts(t0, &[(2, Some(29)), (3, None), (4, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4]), &ids(&[]), &seen, t0 + secs(30), &rule);
        assert_eq!(verdict.reap, None);
        assert!(verdict.held.iter().all(|(_, _, hold)| matches!(hold, Hold::NoQuorum { reachable: 2, voters: 4 })));
        // A learner needs a majority of the voters too.
        let seen = contacts(t0, &[(2, None), (3, None), (9, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3]), &ids(&[9]), &seen, t0 + secs(30), &rule);
        assert_eq!(verdict.reap, None);
        assert!(verdict.held.iter().any(|held| *held == (9, secs(30), Hold::NoQuorum { reachable: 1, voters: 3 })));
    }

    #[test]
    fn one_member_at_a_time_the_longest_silent_first() {
        let t0 = Instant::now();
        let rule = ReapRule { min_voters: 3, ..RULE };
        // Five voters, 4 silent since 5 s, 5 since the start, learner 9 too.
        let seen = contacts(t0, &[(2, Some(39)), (3, Some(39)), (4, Some(5)), (5, None), (9, Some(2))]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4, 5]), &ids(&[9]), &seen, t0 + secs(40), &rule);
        assert_eq!(verdict.reap, Some(Reap { id: 5, voter: true, silent_for: secs(40) }));
        assert!(verdict.held.is_empty());
        // Once 5 is gone, 9 (silent 38 s) before 4 (35 s); it is a learner.
        let mut seen = seen;
        seen.remove(&5);
        let verdict = decide(1, &ids(&[1, 2, 3, 4]), &ids(&[9]), &seen, t0 + secs(40), &rule);
        assert_eq!(verdict.reap, Some(Reap { id: 9, voter: false, silent_for: secs(38) }));
        // A held candidate does not stop the next one: with a minimum of 4
        // voters, 4 stays, and learner 9 goes.
        let four = ReapRule { min_voters: 4, ..RULE };
        let seen = contacts(t0, &[(2, Some(39)), (3, Some(39)), (4, None), (9, Some(2))]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4]), &ids(&[9]), &seen, t0 + secs(40), &four);
        assert_eq!(verdict.held, [(4, secs(40), Hold::TooFewVoters { left: 3, min: 4 })]);
        assert_eq!(verdict.reap.map(|r| r.id), Some(9));
        // Ties: the lowest id.
        let seen = contacts(t0, &[(2, Some(39)), (3, Some(39)), (4, None), (5, None)]);
        let verdict = decide(1, &ids(&[1, 2, 3, 4, 5]), &ids(&[]), &seen, t0 + secs(40), &rule);
        assert_eq!(verdict.reap.map(|r| r.id), Some(4));
    }

    #[test]
    fn a_new_leader_and_every_contact_start_the_clock_over() {
        let t0 = Instant::now();
        let mut tracker = ContactTracker::default();
        tracker.lead(Some(5));
        tracker.sync_members(&ids(&[2, 3, 4]), t0);
        for id in [2, 3] {
            tracker.contact(id, t0 + secs(29));
        }
        let voters = ids(&[1, 2, 3, 4]);
        let decide_at =
            |tracker: &ContactTracker, s| decide(1, &voters, &ids(&[]), tracker.contacts(), t0 + secs(s), &RULE);
        assert_eq!(decide_at(&tracker, 30).reap.map(|r| r.id), Some(4));

        // Leadership lost and won again in term 7: node 4 must be silent
        // for the whole duration again, counted from the new leadership.
        tracker.lead(None);
        assert!(tracker.contacts().is_empty());
        tracker.lead(Some(7));
        tracker.sync_members(&ids(&[2, 3, 4]), t0 + secs(30));
        for id in [2, 3] {
            tracker.contact(id, t0 + secs(38));
        }
        assert_eq!(decide_at(&tracker, 39).reap, None);
        assert_eq!(decide_at(&tracker, 40).reap.map(|r| r.id), Some(4));

        // A contact restarts its clock; so does the matched index advancing.
        tracker.contact(4, t0 + secs(40));
        assert_eq!(decide_at(&tracker, 45).reap, None);
        tracker.matched(4, 10, t0 + secs(45));
        tracker.matched(4, 10, t0 + secs(48));
        assert_eq!(tracker.contacts()[&4].last, Some(t0 + secs(40)), "no advance, no contact");
        tracker.matched(4, 11, t0 + secs(49));
        assert_eq!(tracker.contacts()[&4].last, Some(t0 + secs(49)));

        // A member that left is forgotten; a new one starts its clock.
        tracker.sync_members(&ids(&[2, 3, 8]), t0 + secs(50));
        assert_eq!(tracker.contacts().keys().copied().collect::<Vec<_>>(), [2, 3, 8]);
        assert_eq!(tracker.contacts()[&8], Contact { since: t0 + secs(50), last: None });
    }
}
