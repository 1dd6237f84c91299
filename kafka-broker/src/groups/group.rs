//! One classic group: its state machine, members, selected protocol and committed offsets
//! (Kafka's `ClassicGroup` and `ClassicGroupMember`). Nothing here schedules timers or sends
//! answers: the coordinator (`classic.rs`) does, and calls these methods to change the group.
//!
//! States and the transitions Kafka allows (`ClassicGroupState`):
//!
//! ```text
//! Empty               <- PreparingRebalance (the join phase ended with no members)
//! PreparingRebalance  <- Empty, CompletingRebalance, Stable
//! CompletingRebalance <- PreparingRebalance (the join phase ended; waiting for the leader's SyncGroup)
//! Stable              <- CompletingRebalance (the leader's assignment arrived)
//! Dead                <- any state (the group is being deleted)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::{ErrorCode, Message};

use super::{JoinMember, Waiter};

/// The protocol type of Kafka consumers (`ConsumerProtocol.PROTOCOL_TYPE`).
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A classic group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The states a group may move to this one from.
    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// One protocol a member supports: an assignor name and the member's metadata for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A group member.
#[derive(Debug)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// The JoinGroup waiting for the join phase to end.
    pub awaiting_join: Option<Waiter>,
    /// The SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<Waiter>,
    /// Joined in the current join phase for the first time: its session may expire even while
    /// it waits (it has no member id to heartbeat with until the join phase ends).
    pub is_new: bool,
}

impl Member {
    /// Whether `protocols` are exactly this member's (names, metadata and order).
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// The member's metadata for protocol `name` (empty if it does not support it).
    pub fn metadata(&self, name: &str) -> Bytes {
        self.protocols.iter().find(|p| p.name == name).map(|p| p.metadata.clone()).unwrap_or_default()
    }

    /// The first protocol in the member's preference order that is a candidate.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols.iter().map(|p| p.name.as_str()).find(|n| candidates.contains(n))
    }

    /// Whether the member's session may end now: a member waiting in a rebalance is alive by
    /// definition, unless it is new (Kafka's `hasSatisfiedHeartbeat`).
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub offset: i64,
    /// -1: none given.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set by OffsetCommit v2-4 with a retention time; otherwise the broker's retention applies.
    pub expire_timestamp_ms: Option<i64>,
    /// The order of the commit among all commits (Kafka compares the offsets of the commit
    /// records in `__consumer_offsets`): when a transaction commits, its offsets replace only
    /// older ones. Assigned by the coordinator when the commit is stored.
    pub record_seq: u64,
}

/// A classic group.
#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub previous_state: GroupState,
    /// When the group entered its current state (cluster clock).
    pub state_timestamp_ms: Option<i64>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// Members in the order they joined.
    members: Vec<Member>,
    /// Group instance id -> member id.
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED whose JoinGroup has not come back yet.
    pending_join: BTreeSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    /// A member joined during the initial rebalance delay (which is then extended).
    pub new_member_added: bool,
    /// Topics the members subscribe to (consumer protocol only; `None`: unknown).
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// Committed offsets: topic -> partition -> offset.
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// Offsets committed by open transactions (TxnOffsetCommit): producer id -> topic ->
    /// partition -> offset. They become committed offsets when the transaction commits and
    /// disappear when it aborts (Kafka's `pendingTransactionalOffsetCommits`).
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<String, BTreeMap<i32, CommittedOffset>>>,
    /// The broker coordinating the group when it was last looked at; a change means the
    /// coordinator moved and waiting requests must be told.
    pub coordinator: i32,
    /// Set when the group is a consumer group (KIP-848): then it has no classic members and
    /// stays Empty as a classic group; this holds its members and epochs.
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: String, now: i64, coordinator: i32) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            state_timestamp_ms: Some(now),
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            static_members: BTreeMap::new(),
            pending_join: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
            coordinator,
            consumer: None,
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Moves to `to` if Kafka allows the transition; an invalid one is a coordinator bug,
    /// logged and refused.
    pub fn transition_to(&mut self, to: GroupState, now: i64) -> bool {
        if !to.valid_previous().contains(&self.state) {
            tracing::error!(group = %self.id, from = self.state.name(), to = to.name(), "invalid group state transition");
            return false;
        }
        self.previous_state = self.state;
        self.state = to;
        self.state_timestamp_ms = Some(now);
        true
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn members_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.members.iter_mut()
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    pub fn has_member(&self, id: &str) -> bool {
        self.member(id).is_some()
    }

    pub fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// Adds a member (its JoinGroup waiter already set). The caller checked that its
    /// protocols are supported and its instance id is free; a member that breaks either is
    /// not added (false).
    pub fn add(&mut self, member: Member) -> bool {
        if member.instance_id.as_ref().is_some_and(|i| self.static_members.contains_key(i)) {
            return false;
        }
        let names: Vec<&str> = member.protocols.iter().map(|p| p.name.as_str()).collect();
        if !self.supports_protocols(&member.protocol_type, &names) {
            return false;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), member.id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_join.remove(&member.id);
        self.members.push(member);
        true
    }

    /// Removes a member; the leader passes to the first remaining member.
    pub fn remove(&mut self, id: &str) -> Option<Member> {
        let removed = self.members.iter().position(|m| m.id == id).map(|i| self.members.remove(i));
        if let Some(instance) = removed.as_ref().and_then(|m| m.instance_id.as_ref()) {
            self.static_members.remove(instance);
        }
        if self.is_leader(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_join.remove(id);
        self.pending_sync.remove(id);
        removed
    }

    /// Keeps the leader if it rejoined, else makes the first member that rejoined the leader;
    /// false if no member rejoined (or there is no leader).
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.as_deref() else { return false };
        if self.member(leader).is_some_and(|m| m.awaiting_join.is_some()) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                tracing::info!(group = %self.id, old = leader, new = %m.id, "leader did not rejoin; electing another");
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// A static member restarted: the member `old` becomes `new` with everything else kept
    /// (assignment included). Returns the old member's waiting JoinGroup and SyncGroup, which
    /// the caller fences.
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old: &str,
        new: &str,
    ) -> Option<(Option<Waiter>, Option<Waiter>)> {
        let m = self.member_mut(old)?;
        let waiters = (m.awaiting_join.take(), m.awaiting_sync.take());
        m.id = new.to_string();
        m.is_new = false;
        if self.is_leader(old) {
            self.leader = Some(new.to_string());
        }
        self.static_members.insert(instance_id.to_string(), new.to_string());
        // A pending sync of the old id is not carried over (Kafka's new member object is not
        // in the pending set either).
        self.pending_sync.remove(old);
        Some(waiters)
    }

    pub fn is_pending_member(&self, id: &str) -> bool {
        self.pending_join.contains(id)
    }

    pub fn add_pending_member(&mut self, id: &str) {
        if !self.has_member(id) {
            self.pending_join.insert(id.to_string());
        }
    }

    pub fn add_pending_sync(&mut self, id: &str) {
        if self.has_member(id) {
            self.pending_sync.insert(id.to_string());
        }
    }

    pub fn remove_pending_sync(&mut self, id: &str) -> bool {
        self.pending_sync.remove(id)
    }

    pub fn has_received_sync_from_all(&self) -> bool {
        self.pending_sync.is_empty()
    }

    pub fn pending_sync_members(&self) -> Vec<String> {
        self.pending_sync.iter().cloned().collect()
    }

    pub fn clear_pending_sync(&mut self) {
        self.pending_sync.clear();
    }

    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// Members that have not rejoined in this join phase.
    pub fn not_yet_rejoined(&self) -> Vec<&Member> {
        self.members.iter().filter(|m| m.awaiting_join.is_none()).collect()
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members.iter().filter(|m| m.awaiting_join.is_some()).count()
    }

    pub fn has_all_members_joined(&self) -> bool {
        self.num_awaiting_join() == self.members.len() && self.pending_join.is_empty()
    }

    /// The longest rebalance timeout of the members.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }

    /// Kafka's `validateMember`: an instance id must map to this member id (else
    /// FENCED_INSTANCE_ID, or UNKNOWN_MEMBER_ID if the instance id is unknown), and the member
    /// must exist.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.static_member_id(instance) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(existing) if existing != member_id => {
                    tracing::info!(group = %self.id, member_id, instance, existing, "static member fenced");
                    return Err(ErrorCode::FencedInstanceId);
                }
                Some(_) => {}
            }
        }
        if !self.has_member(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        Ok(())
    }

    /// Whether a rebalance can start from the current state.
    pub fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance.valid_previous().contains(&self.state)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let Some(first) = self.members.first() else { return BTreeSet::new() };
        first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.protocols.iter().any(|p| p.name == *name)))
            .collect()
    }

    /// The protocol for the next generation: each member votes for its most preferred
    /// protocol among those every member supports, and the most votes win (Kafka's
    /// `selectProtocol`; Kafka breaks ties by hash order, this by the first vote cast).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for m in &self.members {
            let Some(vote) = m.vote(&candidates) else { continue };
            match votes.iter_mut().find(|(name, _)| *name == vote) {
                Some((_, n)) => *n += 1,
                None => votes.push((vote, 1)),
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, n) in votes {
            if best.map_or(true, |(_, most)| n > most) {
                best = Some((name, n));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Whether a member of `protocol_type` with these protocols may join: into an empty
    /// group anything non-empty, otherwise the same type and a protocol every member
    /// supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[&str]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|name| self.members.iter().all(|m| m.protocols.iter().any(|p| p.name == *name)))
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// The topics the members subscribe to, from their consumer-protocol metadata read at
    /// version 0 (the prefix of every version); `None` when the group does not use the
    /// consumer protocol, has no selected protocol, or a member's metadata does not parse.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            let mut data = m.metadata(protocol);
            if data.len() < 2 || data.get_i16() < 0 {
                return None;
            }
            let sub = ConsumerProtocolSubscription::decode(&mut data, 0).ok()?;
            topics.extend(sub.topics);
        }
        Some(topics)
    }

    /// Whether the group consumes `topic`; when unknown, consumer groups are assumed to.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        if let Some(cg) = &self.consumer {
            return cg.is_subscribed_to_topic(topic);
        }
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    /// Replaces a member's protocols and timeouts and its waiting JoinGroup; returns the
    /// JoinGroup it replaced, which is never answered (as in Kafka, whose client times out).
    pub fn update_member(
        &mut self,
        id: &str,
        protocols: Vec<Protocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        waiter: Option<Waiter>,
    ) -> Option<Waiter> {
        let m = self.member_mut(id)?;
        m.protocols = protocols;
        m.rebalance_timeout_ms = rebalance_timeout_ms;
        m.session_timeout_ms = session_timeout_ms;
        std::mem::replace(&mut m.awaiting_join, waiter)
    }

    /// The next generation: a protocol is selected and the group waits for the leader's
    /// assignment, or, with no members left, it is empty.
    pub fn init_next_generation(&mut self, now: i64) {
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::Empty, now);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::CompletingRebalance, now);
        }
        self.pending_sync.clear();
    }

    /// Every member with its metadata for the selected protocol: what the leader is sent.
    pub fn leader_view(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    pub fn has_offsets(&self) -> bool {
        self.offsets.values().any(|t| !t.is_empty()) || self.has_pending_txn_offsets()
    }

    /// Whether any open transaction has offsets pending in the group.
    pub fn has_pending_txn_offsets(&self) -> bool {
        self.pending_txn_offsets.values().any(|topics| topics.values().any(|parts| !parts.is_empty()))
    }

    /// Whether an open transaction has an offset pending for the partition.
    pub fn has_pending_txn_offset(&self, topic: &str, partition: i32) -> bool {
        self.pending_txn_offsets.values().any(|topics| topics.get(topic).is_some_and(|p| p.contains_key(&partition)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::consumer_protocol::encode_subscription;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|n| Protocol { name: (*n).into(), metadata: Bytes::from(format!("{id}-{n}")) })
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: Some(Waiter { ticket: 0, version: 5 }),
            awaiting_sync: None,
            is_new: true,
        }
    }

    fn group_with(members: Vec<Member>) -> Group {
        let mut g = Group::new("g".into(), 0, 1);
        for m in members {
            assert!(g.add(m));
            if g.is(GroupState::Empty) {
                assert!(g.transition_to(GroupState::PreparingRebalance, 1));
            }
        }
        g
    }

    #[test]
    fn transitions_follow_kafka() {
        use GroupState::*;
        let mut g = Group::new("g".into(), 0, 1);
        assert!(!g.transition_to(Stable, 1), "Empty -> Stable is not a transition");
        assert!(!g.transition_to(CompletingRebalance, 1));
        assert!(g.is(Empty));
        assert!(g.can_rebalance());
        assert!(g.transition_to(PreparingRebalance, 2));
        assert!(!g.can_rebalance(), "already rebalancing");
        assert!(!g.transition_to(Stable, 3));
        assert!(g.transition_to(CompletingRebalance, 3));
        assert!(g.can_rebalance());
        assert!(!g.transition_to(Empty, 4), "only the join phase empties a group");
        assert!(g.transition_to(Stable, 4));
        assert_eq!((g.previous_state, g.state_timestamp_ms), (CompletingRebalance, Some(4)));
        assert!(g.transition_to(PreparingRebalance, 5));
        assert!(g.transition_to(Empty, 6));
        assert!(g.transition_to(Dead, 7));
        assert!(g.transition_to(Dead, 8), "Dead is final but may be re-entered");
        for to in [Empty, PreparingRebalance, CompletingRebalance, Stable] {
            assert!(!g.transition_to(to, 9), "nothing leaves Dead ({to:?})");
        }
    }

    #[test]
    fn first_member_leads_and_leadership_passes_on_removal() {
        let mut g = group_with(vec![member("a", &["range"]), member("b", &["range"]), member("c", &["range"])]);
        assert_eq!(g.leader.as_deref(), Some("a"));
        assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
        g.remove("b");
        assert_eq!(g.leader.as_deref(), Some("a"));
        g.remove("a");
        assert_eq!(g.leader.as_deref(), Some("c"));
        g.remove("c");
        assert_eq!(g.leader, None);
        assert!(g.remove("c").is_none());
    }

    #[test]
    fn a_leader_that_did_not_rejoin_is_replaced_by_one_that_did() {
        let mut g = group_with(vec![member("a", &["range"]), member("b", &["range"])]);
        assert!(g.maybe_elect_new_joined_leader());
        assert_eq!(g.leader.as_deref(), Some("a"));
        g.member_mut("a").unwrap().awaiting_join = None;
        assert!(g.maybe_elect_new_joined_leader());
        assert_eq!(g.leader.as_deref(), Some("b"));
        g.member_mut("b").unwrap().awaiting_join = None;
        assert!(!g.maybe_elect_new_joined_leader(), "nobody rejoined");
        assert_eq!(g.not_yet_rejoined().len(), 2);
        assert!(!g.has_all_members_joined());
    }

    #[test]
    fn protocol_is_chosen_by_vote_among_those_everyone_supports() {
        // "roundrobin" is everyone's but nobody's first choice among the common ones except c.
        let g = group_with(vec![
            member("a", &["sticky", "range", "roundrobin"]),
            member("b", &["range", "roundrobin"]),
            member("c", &["roundrobin", "range"]),
        ]);
        // Common: range, roundrobin. Votes: a -> range, b -> range, c -> roundrobin.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        assert!(g.supports_protocols("consumer", &["roundrobin"]));
        assert!(!g.supports_protocols("consumer", &["sticky"]), "b and c lack sticky");
        assert!(!g.supports_protocols("connect", &["range"]), "another protocol type");
        let empty = Group::new("e".into(), 0, 1);
        assert!(empty.supports_protocols("anything", &["x"]));
        assert!(!empty.supports_protocols("", &["x"]));
        assert!(!empty.supports_protocols("consumer", &[]));
    }

    #[test]
    fn a_tie_goes_to_the_first_vote() {
        let g = group_with(vec![
            member("a", &["cooperative-sticky", "range"]),
            member("b", &["range", "cooperative-sticky"]),
        ]);
        assert_eq!(g.select_protocol().as_deref(), Some("cooperative-sticky"));
    }

    #[test]
    fn add_refuses_unsupported_protocols_and_duplicate_instances() {
        let mut g = group_with(vec![member("a", &["range"])]);
        assert!(!g.add(member("b", &["roundrobin"])));
        let mut s1 = member("s1", &["range"]);
        s1.instance_id = Some("i".into());
        assert!(g.add(s1));
        let mut s2 = member("s2", &["range"]);
        s2.instance_id = Some("i".into());
        assert!(!g.add(s2));
        assert_eq!(g.static_member_id("i"), Some("s1"));
        assert_eq!(g.members().len(), 2);
    }

    #[test]
    fn member_validation_fences_stale_static_members() {
        let mut s = member("s1", &["range"]);
        s.instance_id = Some("i".into());
        let mut g = group_with(vec![s, member("d", &["range"])]);
        assert_eq!(g.validate_member("s1", Some("i")), Ok(()));
        assert_eq!(g.validate_member("d", None), Ok(()));
        assert_eq!(g.validate_member("x", None), Err(ErrorCode::UnknownMemberId));
        assert_eq!(g.validate_member("s1", Some("other")), Err(ErrorCode::UnknownMemberId));
        assert_eq!(g.validate_member("d", Some("i")), Err(ErrorCode::FencedInstanceId));
        g.member_mut("s1").unwrap().assignment = Bytes::from_static(b"assigned");
        let (join, sync) = g.replace_static_member("i", "s1", "s2").unwrap();
        assert!(join.is_some() && sync.is_none());
        assert_eq!(g.validate_member("s1", Some("i")), Err(ErrorCode::FencedInstanceId));
        assert_eq!(g.validate_member("s2", Some("i")), Ok(()));
        assert_eq!(g.member("s2").unwrap().assignment, Bytes::from_static(b"assigned"));
        assert_eq!(g.leader.as_deref(), Some("s2"), "the leader's id is replaced too");
        g.remove("s2");
        assert_eq!(g.static_member_id("i"), None);
    }

    #[test]
    fn next_generation_selects_a_protocol_or_empties_the_group() {
        let mut g = group_with(vec![member("a", &["range"])]);
        g.add_pending_sync("a");
        g.init_next_generation(10);
        assert_eq!((g.generation, g.state), (1, GroupState::CompletingRebalance));
        assert_eq!(g.protocol_name.as_deref(), Some("range"));
        assert!(g.has_received_sync_from_all());
        assert_eq!(g.leader_view()[0].metadata, Bytes::from_static(b"a-range"));
        assert!(g.transition_to(GroupState::PreparingRebalance, 11));
        g.remove("a");
        g.init_next_generation(12);
        assert_eq!((g.generation, g.state, g.protocol_name.clone()), (2, GroupState::Empty, None));
        assert_eq!(g.subscribed_topics, Some(BTreeSet::new()));
    }

    #[test]
    fn pending_members_count_as_not_joined() {
        let mut g = group_with(vec![member("a", &["range"])]);
        assert!(g.has_all_members_joined());
        g.add_pending_member("p");
        assert!(!g.has_all_members_joined());
        assert!(g.is_pending_member("p"));
        assert!(g.add(member("p", &["range"])));
        assert!(!g.is_pending_member("p"), "joining clears the pending entry");
        assert!(g.has_all_members_joined());
    }

    #[test]
    fn subscribed_topics_come_from_consumer_metadata() {
        let sub = |topics: &[&str]| {
            let s = ConsumerProtocolSubscription {
                topics: topics.iter().map(|t| (*t).to_string()).collect(),
                ..Default::default()
            };
            encode_subscription(&s, 3).unwrap()
        };
        let mut a = member("a", &["range"]);
        a.protocols[0].metadata = sub(&["orders", "payments"]);
        let mut b = member("b", &["range"]);
        b.protocols[0].metadata = sub(&["audit"]);
        let mut g = group_with(vec![a, b]);
        g.init_next_generation(1);
        let topics: Vec<_> = g.subscribed_topics.clone().unwrap().into_iter().collect();
        assert_eq!(topics, ["audit", "orders", "payments"]);
        assert!(g.is_subscribed_to_topic("audit") && !g.is_subscribed_to_topic("other"));
        // Garbage metadata: unknown, and a consumer group is assumed subscribed to anything.
        g.member_mut("b").unwrap().protocols[0].metadata = Bytes::from_static(b"\x00");
        g.subscribed_topics = g.compute_subscribed_topics();
        assert_eq!(g.subscribed_topics, None);
        assert!(g.is_subscribed_to_topic("other"));
    }
}
