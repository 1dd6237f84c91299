//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup, and the timers of the classic protocol:
//! Kafka's `GroupMetadataManager` (classic part), path for path. Handlers have checked the
//! group id, the session timeout and that this broker coordinates the group.
//!
//! A rebalance, as Kafka runs it:
//!
//! 1. Something starts it (a new member, a member with new metadata, the leader rejoining,
//!    a member leaving or timing out): the group goes to PreparingRebalance; members are
//!    told by REBALANCE_IN_PROGRESS on their next heartbeat or SyncGroup and send JoinGroup,
//!    which waits.
//! 2. The join phase ends when every member has rejoined, or at the rebalance timeout (the
//!    longest of the members'), when dynamic members that did not rejoin are removed. A new
//!    group first waits `group.initial.rebalance.delay.ms`, extended while members keep
//!    arriving (up to the rebalance timeout).
//! 3. Every waiting JoinGroup is answered with the new generation; the leader also gets every
//!    member's metadata. The group waits in CompletingRebalance for the leader's SyncGroup,
//!    which carries the assignment; SyncGroups of other members wait for it.
//! 4. The leader's SyncGroup answers every waiting SyncGroup and the group is Stable. Members
//!    that never send SyncGroup within the rebalance timeout are removed (a new rebalance).

use bytes::Bytes;
use kafka_protocol::ErrorCode;

use super::group::{Member, Protocol};
use super::timer::{TimerKey, TimerTask, Timers};
use super::NEW_MEMBER_JOIN_TIMEOUT_MS;
use super::{Completion, Coordinator, Group, GroupConfig, GroupState, JoinResult, SyncResult, Waiter};

/// JoinGroup, as every version reads (v0 has no rebalance timeout: the session timeout is
/// used, as Kafka does).
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub reason: Option<String>,
}

/// SyncGroup, as every version reads.
#[derive(Debug, Clone)]
pub(crate) struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// JoinGroup v4+ hands out member ids first (KIP-394).
fn requires_known_member_id(version: i16) -> bool {
    version >= 4
}

/// JoinGroup v9+ lets a restarted static leader skip the assignment (KIP-814).
fn supports_skipping_assignment(version: i16) -> bool {
    version >= 9
}

/// What the coordinator's operations need besides the group.
struct Cx<'a> {
    timers: &'a mut Timers,
    out: &'a mut Vec<Completion>,
    config: &'a GroupConfig,
    now: i64,
}

impl Cx<'_> {
    fn join(&mut self, waiter: Waiter, result: JoinResult) {
        self.out.push(Completion::Join(waiter, result));
    }

    fn sync(&mut self, waiter: Waiter, result: SyncResult) {
        self.out.push(Completion::Sync(waiter, result));
    }

    fn schedule_heartbeat(&mut self, group: &str, member: &str, timeout_ms: i64) {
        self.timers.schedule(
            TimerKey::Heartbeat(group.to_string(), member.to_string()),
            self.now.saturating_add(timeout_ms),
            TimerTask::ExpireHeartbeat,
        );
    }

    fn cancel_heartbeat(&mut self, group: &str, member: &str) {
        self.timers.cancel(&TimerKey::Heartbeat(group.to_string(), member.to_string()));
    }
}

/// The current generation as a JoinGroup answer for `member_id`.
fn current_generation(group: &Group, member_id: &str, members: Vec<super::JoinMember>) -> JoinResult {
    JoinResult {
        error: ErrorCode::None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        skip_assignment: false,
        member_id: member_id.to_string(),
        members,
    }
}

impl Coordinator {
    /// Splits the coordinator into the group and what operations on it need.
    fn with_group<R>(&mut self, id: &str, now: i64, f: impl FnOnce(&mut Group, &mut Cx<'_>) -> R) -> Option<R> {
        let Coordinator { groups, timers, completions, config, .. } = self;
        let group = groups.get_mut(id)?;
        let mut cx = Cx { timers, out: completions, config, now };
        Some(f(group, &mut cx))
    }

    /// JoinGroup: answered through `waiter`, now or when the join phase ends.
    pub fn join(&mut self, now: i64, coordinator: i32, req: JoinRequest, waiter: Waiter) {
        let is_unknown = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            // A group is created by a member without an id; a member id for a group that does
            // not exist is unknown.
            if !is_unknown {
                self.completions
                    .push(Completion::Join(waiter, JoinResult::error(&req.member_id, ErrorCode::UnknownMemberId)));
                return;
            }
            self.groups.insert(req.group_id.clone(), Group::new(req.group_id.clone(), now, coordinator));
        }
        let new_id = is_unknown.then(|| self.generate_member_id(&req.client_id, req.instance_id.as_deref()));
        let max_size = self.config.max_size;
        let group_id = req.group_id.clone();
        self.with_group(&group_id, now, |group, cx| {
            if !accept_joining_member(group, &req.member_id, max_size) {
                group.remove(&req.member_id);
                cx.join(waiter, JoinResult::error("", ErrorCode::GroupMaxSizeReached));
            } else if let Some(new_id) = new_id {
                join_new_member(group, cx, req, new_id, waiter);
            } else {
                join_existing_member(group, cx, req, waiter);
            }
        });
    }

    /// SyncGroup: answered through `waiter`, now or when the leader's assignment arrives.
    pub fn sync(&mut self, now: i64, req: SyncRequest, waiter: Waiter) {
        let handled = self.with_group(&req.group_id.clone(), now, |group, cx| sync_group(group, cx, req, waiter));
        if handled.is_none() {
            self.completions.push(Completion::Sync(waiter, SyncResult::error(ErrorCode::UnknownMemberId)));
        }
    }

    /// Heartbeat: the error code to answer with.
    pub fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> ErrorCode {
        self.with_group(group_id, now, |group, cx| {
            if group.is(GroupState::Dead) {
                return ErrorCode::CoordinatorNotAvailable;
            }
            if let Err(e) = group.validate_member(member_id, instance_id) {
                return e;
            }
            if generation != group.generation {
                return ErrorCode::IllegalGeneration;
            }
            match group.state {
                GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
                GroupState::PreparingRebalance => {
                    reschedule_heartbeat(group, cx, member_id);
                    ErrorCode::RebalanceInProgress
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    // Members may heartbeat between their JoinGroup and SyncGroup answers.
                    reschedule_heartbeat(group, cx, member_id);
                    ErrorCode::None
                }
            }
        })
        .unwrap_or(ErrorCode::UnknownMemberId)
    }

    /// LeaveGroup for these (member id, instance id) pairs: the error for each, or a
    /// group-level error.
    pub fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let Some(result) = self.with_group(group_id, now, |group, cx| leave_group(group, cx, members)) else {
            // No such group: every member is unknown.
            return Ok(members.iter().map(|_| ErrorCode::UnknownMemberId).collect());
        };
        result
    }

    /// Keeps a member alive (an OffsetCommit in Stable or PreparingRebalance does).
    pub fn touch_member(&mut self, now: i64, group_id: &str, member_id: &str) {
        self.with_group(group_id, now, |group, cx| reschedule_heartbeat(group, cx, member_id));
    }

    /// A timer fired.
    pub(super) fn run_timer(&mut self, now: i64, key: TimerKey, task: TimerTask) {
        match (key, task) {
            (TimerKey::Join(group), TimerTask::CompleteJoin) => {
                self.with_group(&group, now, complete_join);
            }
            (TimerKey::Join(group), TimerTask::InitialRebalance { delay_ms, remaining_ms }) => {
                self.with_group(&group, now, |g, cx| initial_rebalance_timer(g, cx, delay_ms, remaining_ms));
            }
            (TimerKey::Sync(group), TimerTask::ExpireSync { generation }) => {
                self.with_group(&group, now, |g, cx| expire_pending_sync(g, cx, generation));
            }
            (TimerKey::Heartbeat(group, member), TimerTask::ExpireHeartbeat) => {
                self.with_group(&group, now, |g, cx| expire_heartbeat(g, cx, &member));
            }
            (TimerKey::ConsumerSession(group, member), task @ TimerTask::FenceMember)
            | (TimerKey::ConsumerRebalance(group, member), task @ TimerTask::RevocationTimeout { .. }) => {
                self.run_consumer_timer(&group, &member, task);
            }
            (key, task) => tracing::error!(?key, ?task, "timer task does not match its key"),
        }
    }
}

/// Kafka's `acceptJoiningMember` (`group.max.size`).
fn accept_joining_member(group: &Group, member_id: &str, max_size: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group.member(member_id).is_some_and(|m| m.awaiting_join.is_some()) || group.num_awaiting_join() < max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.has_member(member_id) || group.members().len() < max_size
        }
    }
}

fn protocol_names(req: &JoinRequest) -> Vec<&str> {
    req.protocols.iter().map(|p| p.name.as_str()).collect()
}

fn join_new_member(group: &mut Group, cx: &mut Cx<'_>, req: JoinRequest, new_id: String, waiter: Waiter) {
    if group.is(GroupState::Dead) {
        cx.join(waiter, JoinResult::error("", ErrorCode::CoordinatorNotAvailable));
    } else if !group.supports_protocols(&req.protocol_type, &protocol_names(&req)) {
        cx.join(waiter, JoinResult::error("", ErrorCode::InconsistentGroupProtocol));
    } else if let Some(instance) = req.instance_id.clone() {
        match group.static_member_id(&instance).map(str::to_string) {
            Some(existing) => update_static_member(group, cx, req, &instance, &existing, &new_id, waiter),
            None => add_member_then_rebalance(group, cx, req, new_id, waiter),
        }
    } else if requires_known_member_id(waiter.version) {
        // KIP-394: the member gets its id first and joins with it, so a client that times out
        // and retries does not leave a member behind.
        tracing::info!(group = %group.id, member = %new_id, "new dynamic member must rejoin with its id");
        group.add_pending_member(&new_id);
        cx.schedule_heartbeat(&group.id, &new_id, i64::from(req.session_timeout_ms));
        cx.join(waiter, JoinResult::error(&new_id, ErrorCode::MemberIdRequired));
    } else {
        add_member_then_rebalance(group, cx, req, new_id, waiter);
    }
}

fn join_existing_member(group: &mut Group, cx: &mut Cx<'_>, req: JoinRequest, waiter: Waiter) {
    let member_id = req.member_id.clone();
    if group.is(GroupState::Dead) {
        cx.join(waiter, JoinResult::error(&member_id, ErrorCode::CoordinatorNotAvailable));
        return;
    }
    if !group.supports_protocols(&req.protocol_type, &protocol_names(&req)) {
        cx.join(waiter, JoinResult::error(&member_id, ErrorCode::InconsistentGroupProtocol));
        return;
    }
    if group.is_pending_member(&member_id) {
        if req.instance_id.is_some() {
            // Pending ids are only handed to dynamic members (Kafka throws here).
            cx.join(waiter, JoinResult::error(&member_id, ErrorCode::UnknownMemberId));
            return;
        }
        add_member_then_rebalance(group, cx, req, member_id, waiter);
        return;
    }
    if let Err(e) = group.validate_member(&member_id, req.instance_id.as_deref()) {
        cx.join(waiter, JoinResult::error(&member_id, e));
        return;
    }
    let Some(matches) = group.member(&member_id).map(|m| m.matches(&req.protocols)) else { return };
    match group.state {
        GroupState::PreparingRebalance => update_member_then_rebalance(group, cx, req, waiter),
        GroupState::CompletingRebalance => {
            if matches {
                // The member lost its JoinGroup answer: send the current generation again.
                let members = if group.is_leader(&member_id) { group.leader_view() } else { Vec::new() };
                cx.join(waiter, current_generation(group, &member_id, members));
            } else {
                update_member_then_rebalance(group, cx, req, waiter);
            }
        }
        GroupState::Stable => {
            // The leader rejoining starts a rebalance even with unchanged metadata: it is how
            // it reacts to changes the metadata cannot show (partitions added to a topic).
            if group.is_leader(&member_id) || !matches {
                update_member_then_rebalance(group, cx, req, waiter);
            } else {
                cx.join(waiter, current_generation(group, &member_id, Vec::new()));
            }
        }
        GroupState::Empty | GroupState::Dead => {
            cx.join(waiter, JoinResult::error(&member_id, ErrorCode::UnknownMemberId));
        }
    }
}

fn add_member_then_rebalance(group: &mut Group, cx: &mut Cx<'_>, req: JoinRequest, member_id: String, waiter: Waiter) {
    let member = Member {
        id: member_id.clone(),
        instance_id: req.instance_id,
        client_id: req.client_id,
        client_host: req.client_host,
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type,
        protocols: req.protocols,
        assignment: Bytes::new(),
        awaiting_join: Some(waiter),
        awaiting_sync: None,
        is_new: true,
    };
    if group.is(GroupState::PreparingRebalance) && group.previous_state == GroupState::Empty {
        // Members are still arriving: the initial rebalance waits a little longer.
        group.new_member_added = true;
    }
    if !group.add(member) {
        cx.join(waiter, JoinResult::error("", ErrorCode::InconsistentGroupProtocol));
        return;
    }
    // A new member cannot heartbeat before the join phase ends, and a client that gives up
    // and retries would leave defunct members behind: new members time out after a fixed
    // delay instead of their session timeout.
    cx.schedule_heartbeat(&group.id, &member_id, NEW_MEMBER_JOIN_TIMEOUT_MS);
    let reason =
        format!("adding new member {member_id}; client reason: {}", req.reason.as_deref().unwrap_or("not provided"));
    maybe_prepare_rebalance_or_complete_join(group, cx, &reason);
}

fn update_member_then_rebalance(group: &mut Group, cx: &mut Cx<'_>, req: JoinRequest, waiter: Waiter) {
    group.update_member(&req.member_id, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, Some(waiter));
    let reason = format!(
        "member {} rejoins during {}; client reason: {}",
        req.member_id,
        group.state.name(),
        req.reason.as_deref().unwrap_or("not provided")
    );
    maybe_prepare_rebalance_or_complete_join(group, cx, &reason);
}

/// A static member rejoined without its member id (it restarted): it takes over the old
/// member's place and assignment under a new id. In a Stable group whose selected protocol
/// stays the same there is no rebalance.
fn update_static_member(
    group: &mut Group,
    cx: &mut Cx<'_>,
    req: JoinRequest,
    instance: &str,
    old_id: &str,
    new_id: &str,
    waiter: Waiter,
) {
    tracing::info!(group = %group.id, instance, old = old_id, new = new_id, state = group.state.name(), "static member rejoins");
    let current_leader = group.leader.clone().unwrap_or_default();
    let Some((old_join, old_sync)) = group.replace_static_member(instance, old_id, new_id) else { return };
    // A process still running with the old id is fenced at once.
    if let Some(w) = old_join {
        cx.join(w, JoinResult::error(old_id, ErrorCode::FencedInstanceId));
    }
    if let Some(w) = old_sync {
        cx.sync(w, SyncResult::error(ErrorCode::FencedInstanceId));
    }
    cx.cancel_heartbeat(&group.id, old_id);
    reschedule_heartbeat(group, cx, new_id);
    group.update_member(new_id, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms, Some(waiter));
    match group.state {
        GroupState::Stable => {
            if group.protocol_name.as_deref().unwrap_or_default() == group.select_protocol().unwrap_or_default() {
                let is_leader = group.is_leader(new_id);
                let result = if supports_skipping_assignment(waiter.version) {
                    let members = if is_leader { group.leader_view() } else { Vec::new() };
                    JoinResult { skip_assignment: is_leader, ..current_generation(group, new_id, members) }
                } else {
                    // Older clients would compute an assignment if they saw themselves as the
                    // leader, and a Stable group would not pass it on: they are told the old
                    // leader's id.
                    JoinResult { leader: current_leader, ..current_generation(group, new_id, Vec::new()) }
                };
                if let Some(w) = group.member_mut(new_id).and_then(|m| m.awaiting_join.take()) {
                    cx.join(w, result);
                }
            } else {
                maybe_prepare_rebalance_or_complete_join(group, cx, "a static member rejoined with other protocols");
            }
        }
        // The leader may already have computed an assignment for the old id.
        GroupState::CompletingRebalance => prepare_rebalance(group, cx, "a static member rejoined"),
        GroupState::PreparingRebalance => maybe_complete_join_phase(group, cx),
        GroupState::Empty | GroupState::Dead => {
            // A group with a static member is never empty (Kafka throws here).
            if let Some(w) = group.member_mut(new_id).and_then(|m| m.awaiting_join.take()) {
                cx.join(w, JoinResult::error(new_id, ErrorCode::UnknownMemberId));
            }
        }
    }
}

fn maybe_prepare_rebalance_or_complete_join(group: &mut Group, cx: &mut Cx<'_>, reason: &str) {
    if group.can_rebalance() {
        prepare_rebalance(group, cx, reason);
    } else {
        maybe_complete_join_phase(group, cx);
    }
}

fn prepare_rebalance(group: &mut Group, cx: &mut Cx<'_>, reason: &str) {
    if group.is(GroupState::CompletingRebalance) {
        // Members waiting for an assignment must rejoin instead.
        reset_and_propagate_assignment_with_error(group, cx, ErrorCode::RebalanceInProgress);
    }
    remove_sync_expiration(group, cx);
    let initial = group.is(GroupState::Empty);
    if initial {
        let delay = i64::from(cx.config.initial_rebalance_delay_ms);
        let remaining = (i64::from(group.rebalance_timeout_ms()) - delay).max(0);
        cx.timers.schedule(
            TimerKey::Join(group.id.clone()),
            cx.now.saturating_add(delay),
            TimerTask::InitialRebalance { delay_ms: delay, remaining_ms: remaining },
        );
    }
    let old = group.state;
    group.transition_to(GroupState::PreparingRebalance, cx.now);
    tracing::info!(group = %group.id, from = old.name(), generation = group.generation, reason, "preparing to rebalance");
    if !initial {
        if group.has_all_members_joined() {
            complete_join(group, cx);
        } else {
            cx.timers.schedule(
                TimerKey::Join(group.id.clone()),
                cx.now.saturating_add(i64::from(group.rebalance_timeout_ms())),
                TimerTask::CompleteJoin,
            );
        }
    }
}

/// Ends the join phase early if every member rejoined (never during the initial delay).
fn maybe_complete_join_phase(group: &mut Group, cx: &mut Cx<'_>) {
    if group.is(GroupState::PreparingRebalance)
        && group.previous_state != GroupState::Empty
        && group.has_all_members_joined()
    {
        complete_join(group, cx);
    }
}

fn initial_rebalance_timer(group: &mut Group, cx: &mut Cx<'_>, delay_ms: i64, remaining_ms: i64) {
    if group.new_member_added && remaining_ms != 0 {
        group.new_member_added = false;
        let new_delay = i64::from(cx.config.initial_rebalance_delay_ms).min(remaining_ms);
        let new_remaining = (remaining_ms - delay_ms).max(0);
        cx.timers.schedule(
            TimerKey::Join(group.id.clone()),
            cx.now.saturating_add(new_delay),
            TimerTask::InitialRebalance { delay_ms: new_delay, remaining_ms: new_remaining },
        );
    } else {
        complete_join(group, cx);
    }
}

/// Ends the join phase: dynamic members that did not rejoin are removed, a generation starts
/// and every waiting JoinGroup is answered.
fn complete_join(group: &mut Group, cx: &mut Cx<'_>) {
    cx.timers.cancel(&TimerKey::Join(group.id.clone()));
    let gone: Vec<String> =
        group.not_yet_rejoined().into_iter().filter(|m| m.instance_id.is_none()).map(|m| m.id.clone()).collect();
    for id in &gone {
        group.remove(id);
        cx.cancel_heartbeat(&group.id, id);
    }
    if !gone.is_empty() {
        tracing::info!(group = %group.id, removed = ?gone, "removed dynamic members that did not rejoin");
    }
    if group.is(GroupState::Dead) {
        return;
    }
    if !group.maybe_elect_new_joined_leader() && !group.members().is_empty() {
        // Only static members that did not rejoin are left: wait for them (or for their
        // sessions to end).
        tracing::warn!(group = %group.id, "no member rejoined; waiting another rebalance timeout");
        cx.timers.schedule(
            TimerKey::Join(group.id.clone()),
            cx.now.saturating_add(i64::from(group.rebalance_timeout_ms())),
            TimerTask::CompleteJoin,
        );
        return;
    }
    group.init_next_generation(cx.now);
    if group.is(GroupState::Empty) {
        tracing::info!(group = %group.id, generation = group.generation, "group is now empty");
        return;
    }
    tracing::info!(
        group = %group.id,
        generation = group.generation,
        members = group.members().len(),
        protocol = group.protocol_name.as_deref().unwrap_or_default(),
        "group rebalanced"
    );
    let leader_view = group.leader_view();
    let template = current_generation(group, "", Vec::new());
    let group_id = group.id.clone();
    let mut ids = Vec::new();
    for m in group.members_mut() {
        let members = if template.leader == m.id { leader_view.clone() } else { Vec::new() };
        if let Some(w) = m.awaiting_join.take() {
            cx.join(w, JoinResult { member_id: m.id.clone(), members, ..template.clone() });
        }
        cx.schedule_heartbeat(&group_id, &m.id, i64::from(m.session_timeout_ms));
        m.is_new = false;
        ids.push(m.id.clone());
    }
    for id in &ids {
        group.add_pending_sync(id);
    }
    cx.timers.schedule(
        TimerKey::Sync(group_id),
        cx.now.saturating_add(i64::from(group.rebalance_timeout_ms())),
        TimerTask::ExpireSync { generation: group.generation },
    );
}

fn remove_sync_expiration(group: &mut Group, cx: &mut Cx<'_>) {
    group.clear_pending_sync();
    cx.timers.cancel(&TimerKey::Sync(group.id.clone()));
}

fn reset_and_propagate_assignment_with_error(group: &mut Group, cx: &mut Cx<'_>, error: ErrorCode) {
    for m in group.members_mut() {
        m.assignment = Bytes::new();
    }
    propagate_assignment(group, cx, error);
}

/// Answers every waiting SyncGroup with the member's assignment (or the error).
fn propagate_assignment(group: &mut Group, cx: &mut Cx<'_>, error: ErrorCode) {
    let (protocol_type, protocol_name) = if error == ErrorCode::None {
        (group.protocol_type.clone(), group.protocol_name.clone())
    } else {
        (None, None)
    };
    let group_id = group.id.clone();
    for m in group.members_mut() {
        if let Some(w) = m.awaiting_sync.take() {
            cx.sync(
                w,
                SyncResult {
                    error,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: m.assignment.clone(),
                },
            );
            // Sessions restart once the assignment is out: a member whose session ended
            // while it waited for the leader was not expired (it was waiting).
            cx.schedule_heartbeat(&group_id, &m.id, i64::from(m.session_timeout_ms));
        }
    }
}

fn reschedule_heartbeat(group: &Group, cx: &mut Cx<'_>, member_id: &str) {
    if let Some(m) = group.member(member_id) {
        cx.schedule_heartbeat(&group.id, member_id, i64::from(m.session_timeout_ms));
    }
}

fn sync_group(group: &mut Group, cx: &mut Cx<'_>, req: SyncRequest, waiter: Waiter) {
    if group.is(GroupState::Empty) {
        cx.sync(waiter, SyncResult::error(ErrorCode::UnknownMemberId));
        return;
    }
    if let Err(e) = validate_sync(group, &req) {
        cx.sync(waiter, SyncResult::error(e));
        return;
    }
    match group.state {
        GroupState::PreparingRebalance => cx.sync(waiter, SyncResult::error(ErrorCode::RebalanceInProgress)),
        GroupState::CompletingRebalance => {
            if let Some(m) = group.member_mut(&req.member_id) {
                m.awaiting_sync = Some(waiter);
            }
            remove_pending_sync_member(group, cx, &req.member_id);
            if group.is_leader(&req.member_id) {
                tracing::info!(
                    group = %group.id,
                    generation = group.generation,
                    members = group.members().len(),
                    "assignment received from the leader"
                );
                let mut given: std::collections::BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in group.members_mut() {
                    // A member the leader left out gets an empty assignment.
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                propagate_assignment(group, cx, ErrorCode::None);
                group.transition_to(GroupState::Stable, cx.now);
            }
        }
        GroupState::Stable => {
            remove_pending_sync_member(group, cx, &req.member_id);
            let assignment = group.member(&req.member_id).map(|m| m.assignment.clone()).unwrap_or_default();
            cx.sync(
                waiter,
                SyncResult {
                    error: ErrorCode::None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                },
            );
        }
        GroupState::Empty | GroupState::Dead => cx.sync(waiter, SyncResult::error(ErrorCode::UnknownMemberId)),
    }
}

fn validate_sync(group: &Group, req: &SyncRequest) -> Result<(), ErrorCode> {
    if group.is(GroupState::Dead) {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    group.validate_member(&req.member_id, req.instance_id.as_deref())?;
    if req.generation != group.generation {
        return Err(ErrorCode::IllegalGeneration);
    }
    let inconsistent =
        |asked: &Option<String>, have: &Option<String>| matches!((asked, have), (Some(a), Some(h)) if a != h);
    if inconsistent(&req.protocol_type, &group.protocol_type) || inconsistent(&req.protocol_name, &group.protocol_name)
    {
        return Err(ErrorCode::InconsistentGroupProtocol);
    }
    Ok(())
}

fn remove_pending_sync_member(group: &mut Group, cx: &mut Cx<'_>, member_id: &str) {
    group.remove_pending_sync(member_id);
    let cancel = match group.state {
        GroupState::Dead | GroupState::Empty | GroupState::PreparingRebalance => true,
        GroupState::CompletingRebalance | GroupState::Stable => group.has_received_sync_from_all(),
    };
    if cancel {
        cx.timers.cancel(&TimerKey::Sync(group.id.clone()));
    }
}

fn expire_pending_sync(group: &mut Group, cx: &mut Cx<'_>, generation: i32) {
    if generation != group.generation {
        return;
    }
    if matches!(group.state, GroupState::CompletingRebalance | GroupState::Stable)
        && !group.has_received_sync_from_all()
    {
        let late = group.pending_sync_members();
        for id in &late {
            group.remove(id);
            cx.cancel_heartbeat(&group.id, id);
        }
        tracing::info!(group = %group.id, removed = ?late, "removed members that did not send SyncGroup");
        prepare_rebalance(group, cx, "members did not send SyncGroup in time");
    }
}

fn expire_heartbeat(group: &mut Group, cx: &mut Cx<'_>, member_id: &str) {
    if group.is(GroupState::Dead) {
        return;
    }
    if group.is_pending_member(member_id) {
        tracing::info!(group = %group.id, member = member_id, "pending member did not rejoin in its session timeout");
        group.remove(member_id);
        if group.is(GroupState::PreparingRebalance) && group.has_all_members_joined() {
            complete_join(group, cx);
        }
        return;
    }
    let Some(member) = group.member(member_id) else { return };
    if member.has_satisfied_heartbeat() {
        return;
    }
    tracing::info!(group = %group.id, member = member_id, "session timed out; removing the member");
    remove_member_and_update_group(group, cx, member_id);
}

/// Removes a member whose session ended and moves the group on.
fn remove_member_and_update_group(group: &mut Group, cx: &mut Cx<'_>, member_id: &str) {
    // A new member may time out while its JoinGroup waits: tell it, so it can join again.
    if let Some(w) = group.member_mut(member_id).and_then(|m| m.awaiting_join.take()) {
        cx.join(w, JoinResult::error("", ErrorCode::UnknownMemberId));
    }
    group.remove(member_id);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(group, cx, "a member's session timed out");
        }
        GroupState::PreparingRebalance if group.has_all_members_joined() => complete_join(group, cx),
        _ => {}
    }
}

fn leave_group(
    group: &mut Group,
    cx: &mut Cx<'_>,
    members: &[(String, Option<String>)],
) -> Result<Vec<ErrorCode>, ErrorCode> {
    if group.is(GroupState::Dead) {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    let mut errors = Vec::new();
    for (member_id, instance_id) in members {
        let error = if member_id.is_empty() {
            // Administrative removal by group instance id (KIP-345).
            match instance_id.as_deref().and_then(|i| group.static_member_id(i)).map(str::to_string) {
                Some(id) => {
                    remove_current_member(group, cx, &id);
                    ErrorCode::None
                }
                None => ErrorCode::UnknownMemberId,
            }
        } else if group.is_pending_member(member_id) {
            group.remove(member_id);
            cx.cancel_heartbeat(&group.id, member_id);
            ErrorCode::None
        } else {
            match group.validate_member(member_id, instance_id.as_deref()) {
                Ok(()) => {
                    remove_current_member(group, cx, member_id);
                    ErrorCode::None
                }
                Err(e) => e,
            }
        };
        errors.push(error);
    }
    if errors.contains(&ErrorCode::None) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                maybe_prepare_rebalance_or_complete_join(group, cx, "members left the group");
            }
            GroupState::PreparingRebalance => maybe_complete_join_phase(group, cx),
            _ => {}
        }
    }
    Ok(errors)
}

fn remove_current_member(group: &mut Group, cx: &mut Cx<'_>, member_id: &str) {
    tracing::info!(group = %group.id, member = member_id, "member left the group");
    cx.cancel_heartbeat(&group.id, member_id);
    if let Some(w) = group.member_mut(member_id).and_then(|m| m.awaiting_join.take()) {
        cx.join(w, JoinResult::error("", ErrorCode::UnknownMemberId));
    }
    group.remove(member_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: i16 = 5;

    fn coordinator(initial_delay_ms: i32) -> Coordinator {
        Coordinator::new(GroupConfig { initial_rebalance_delay_ms: initial_delay_ms, ..Default::default() })
    }

    fn request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|n| Protocol { name: (*n).into(), metadata: Bytes::from(n.to_string()) })
                .collect(),
            reason: None,
        }
    }

    /// Sends a JoinGroup; returns its ticket.
    fn join(c: &mut Coordinator, now: i64, req: JoinRequest, version: i16) -> u64 {
        let ticket = c.new_ticket();
        c.join(now, 1, req, Waiter { ticket, version });
        ticket
    }

    fn sync(c: &mut Coordinator, now: i64, member: &str, generation: i32, assignments: &[(&str, &str)]) -> u64 {
        let ticket = c.new_ticket();
        let req = SyncRequest {
            group_id: "g".into(),
            generation,
            member_id: member.into(),
            instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments.iter().map(|(m, a)| ((*m).to_string(), Bytes::from(a.to_string()))).collect(),
        };
        c.sync(now, req, Waiter { ticket, version: V });
        ticket
    }

    /// The JoinGroup answer for `ticket`, if it was answered.
    fn joined(c: &mut Coordinator, ticket: u64) -> Option<JoinResult> {
        let i = c.completions.iter().position(|x| x.ticket() == ticket)?;
        match c.completions.remove(i) {
            Completion::Join(_, r) => Some(r),
            Completion::Sync(..) => None,
        }
    }

    fn synced(c: &mut Coordinator, ticket: u64) -> Option<SyncResult> {
        let i = c.completions.iter().position(|x| x.ticket() == ticket)?;
        match c.completions.remove(i) {
            Completion::Sync(_, r) => Some(r),
            Completion::Join(..) => None,
        }
    }

    /// A member that joined with MEMBER_ID_REQUIRED and rejoined: (its id, the rejoin ticket).
    fn new_member(c: &mut Coordinator, now: i64) -> (String, u64) {
        let t = join(c, now, request("", None, &["range"]), V);
        let r = joined(c, t).unwrap();
        assert_eq!(r.error, ErrorCode::MemberIdRequired);
        let id = r.member_id;
        (id.clone(), join(c, now, request(&id, None, &["range"]), V))
    }

    fn state(c: &Coordinator) -> GroupState {
        c.groups["g"].state
    }

    #[test]
    fn two_members_join_sync_and_rebalance() {
        let mut c = coordinator(0);
        let (a, ta) = new_member(&mut c, 0);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        assert!(joined(&mut c, ta).is_none(), "the initial rebalance waits for its delay, even 0 ms");
        c.fire_timers(0);
        let r = joined(&mut c, ta).unwrap();
        assert_eq!((r.generation, r.leader.as_str(), r.members.len()), (1, a.as_str(), 1));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        let s = sync(&mut c, 1, &a, 1, &[(&a, "all")]);
        assert_eq!(synced(&mut c, s).unwrap().assignment, Bytes::from("all"));
        assert_eq!(state(&c), GroupState::Stable);

        // b arrives: a learns of the rebalance through its heartbeat and rejoins.
        let (b, tb) = new_member(&mut c, 2);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        assert_eq!(c.heartbeat(3, "g", 1, &a, None), ErrorCode::RebalanceInProgress);
        assert!(joined(&mut c, tb).is_none());
        let ta = join(&mut c, 4, request(&a, None, &["range"]), V);
        let (ra, rb) = (joined(&mut c, ta).unwrap(), joined(&mut c, tb).unwrap());
        assert_eq!((ra.generation, rb.generation), (2, 2));
        assert_eq!((ra.members.len(), rb.members.len()), (2, 0), "only the leader sees the members");
        assert_eq!(rb.leader, a);
        assert_eq!(state(&c), GroupState::CompletingRebalance);
        assert_eq!(c.heartbeat(5, "g", 2, &b, None), ErrorCode::None, "heartbeats between join and sync are fine");
        assert_eq!(c.heartbeat(5, "g", 1, &b, None), ErrorCode::IllegalGeneration);
        let sb = sync(&mut c, 5, &b, 2, &[]);
        assert!(synced(&mut c, sb).is_none(), "followers wait for the leader");
        let sa = sync(&mut c, 6, &a, 2, &[(&a, "p0"), (&b, "p1")]);
        assert_eq!(synced(&mut c, sb).unwrap().assignment, Bytes::from("p1"));
        assert_eq!(synced(&mut c, sa).unwrap().assignment, Bytes::from("p0"));
        assert_eq!(state(&c), GroupState::Stable);

        // a leaves: b is alone after one more rebalance.
        assert_eq!(c.leave(7, "g", &[(a.clone(), None)]), Ok(vec![ErrorCode::None]));
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        let tb = join(&mut c, 8, request(&b, None, &["range"]), V);
        let rb = joined(&mut c, tb).unwrap();
        assert_eq!((rb.generation, rb.leader.as_str()), (3, b.as_str()));
        assert_eq!(
            c.leave(9, "g", &[(b.clone(), None), (b.clone(), None)]),
            Ok(vec![ErrorCode::None, ErrorCode::UnknownMemberId])
        );
        assert_eq!((state(&c), c.groups["g"].generation), (GroupState::Empty, 4));
    }

    #[test]
    fn the_initial_delay_is_extended_while_members_arrive() {
        let mut c = coordinator(100);
        let (_, ta) = new_member(&mut c, 0);
        assert_eq!(c.timers.deadline(&TimerKey::Join("g".into())), Some(100));
        let (_, tb) = new_member(&mut c, 50);
        c.fire_timers(100);
        assert!(joined(&mut c, ta).is_none(), "b arrived during the delay: wait again");
        assert_eq!(c.timers.deadline(&TimerKey::Join("g".into())), Some(200));
        c.fire_timers(200);
        assert_eq!((joined(&mut c, ta).unwrap().generation, joined(&mut c, tb).unwrap().generation), (1, 1));
    }

    #[test]
    fn members_that_do_not_rejoin_or_sync_in_time_are_removed() {
        let mut c = coordinator(0);
        let (a, ta) = new_member(&mut c, 0);
        let (b, tb) = new_member(&mut c, 0);
        c.fire_timers(0);
        let _ = (joined(&mut c, ta).unwrap(), joined(&mut c, tb).unwrap());
        // Only the leader syncs; b never does: at the rebalance timeout b is removed.
        let sa = sync(&mut c, 1, &a, 1, &[]);
        assert!(synced(&mut c, sa).is_some());
        c.fire_timers(999);
        assert!(c.groups["g"].has_member(&b));
        c.fire_timers(1000);
        assert!(!c.groups["g"].has_member(&b));
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        // a does not rejoin within the rebalance timeout either: the group empties.
        c.fire_timers(2000);
        assert_eq!((state(&c), c.groups["g"].members().len()), (GroupState::Empty, 0));
    }

    #[test]
    fn sessions_expire_and_start_a_rebalance() {
        let mut c = coordinator(0);
        let (a, ta) = new_member(&mut c, 0);
        let (b, tb) = new_member(&mut c, 0);
        c.fire_timers(0);
        let _ = (joined(&mut c, ta), joined(&mut c, tb));
        let (sa, sb) = (sync(&mut c, 0, &a, 1, &[]), sync(&mut c, 0, &b, 1, &[]));
        let _ = (synced(&mut c, sa), synced(&mut c, sb));
        assert_eq!(c.heartbeat(9_000, "g", 1, &a, None), ErrorCode::None);
        c.fire_timers(10_000);
        assert!(!c.groups["g"].has_member(&b), "b's session (10 s) ended");
        assert!(c.groups["g"].has_member(&a), "a heartbeated at 9 s");
        assert_eq!(c.heartbeat(10_001, "g", 1, &b, None), ErrorCode::UnknownMemberId);
        assert_eq!(c.heartbeat(10_001, "g", 1, &a, None), ErrorCode::RebalanceInProgress);
    }

    #[test]
    fn a_pending_member_that_never_rejoins_expires() {
        let mut c = coordinator(0);
        let t = join(&mut c, 0, request("", None, &["range"]), V);
        let id = joined(&mut c, t).unwrap().member_id;
        assert!(c.groups["g"].is_pending_member(&id));
        c.fire_timers(10_000);
        assert!(!c.groups["g"].is_pending_member(&id));
        let t = join(&mut c, 10_001, request(&id, None, &["range"]), V);
        assert_eq!(joined(&mut c, t).unwrap().error, ErrorCode::UnknownMemberId);
    }

    #[test]
    fn old_versions_join_without_a_member_id_round_trip() {
        let mut c = coordinator(0);
        let t = join(&mut c, 0, request("", None, &["range"]), 3);
        assert!(joined(&mut c, t).is_none());
        c.fire_timers(0);
        let r = joined(&mut c, t).unwrap();
        assert_eq!((r.error, r.generation), (ErrorCode::None, 1));
        assert!(r.member_id.starts_with("client-"));
    }

    #[test]
    fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
        let mut c = coordinator(0);
        let t1 = join(&mut c, 0, request("", Some("i1"), &["range", "roundrobin"]), V);
        let t2 = join(&mut c, 0, request("", Some("i2"), &["range", "roundrobin"]), V);
        c.fire_timers(0);
        let (r1, r2) = (joined(&mut c, t1).unwrap(), joined(&mut c, t2).unwrap());
        assert!(r1.member_id.starts_with("i1-"), "static members are named after their instance id");
        let (old1, old2) = (r1.member_id.clone(), r2.member_id.clone());
        let s2 = sync(&mut c, 1, &old2, 1, &[]);
        let s1 = sync(&mut c, 1, &old1, 1, &[(&old1, "A"), (&old2, "B")]);
        let _ = (synced(&mut c, s1), synced(&mut c, s2));
        // i2 restarts (no member id) within its session: same generation, new id, no rebalance.
        let t = join(&mut c, 2, request("", Some("i2"), &["range", "roundrobin"]), V);
        let r = joined(&mut c, t).unwrap();
        assert_eq!((r.error, r.generation), (ErrorCode::None, 1));
        assert_ne!(r.member_id, old2);
        assert_eq!(state(&c), GroupState::Stable);
        let s = sync(&mut c, 3, &r.member_id, 1, &[]);
        assert_eq!(synced(&mut c, s).unwrap().assignment, Bytes::from("B"));
        // The old process is fenced.
        assert_eq!(c.heartbeat(3, "g", 1, &old2, Some("i2")), ErrorCode::FencedInstanceId);
        // The leader restarting: before v9 it is told the old leader id, so it does not
        // assign; from v9 it gets the members and skip_assignment.
        let t = join(&mut c, 4, request("", Some("i1"), &["range", "roundrobin"]), 8);
        let r = joined(&mut c, t).unwrap();
        assert_eq!((r.leader.as_str(), r.members.len()), (old1.as_str(), 0));
        let t = join(&mut c, 5, request("", Some("i1"), &["range", "roundrobin"]), 9);
        let r = joined(&mut c, t).unwrap();
        assert!(r.skip_assignment);
        assert_eq!((r.leader, r.members.len()), (r.member_id.clone(), 2));
        assert_eq!(state(&c), GroupState::Stable);
        // Different protocols: a rebalance after all.
        let t = join(&mut c, 6, request("", Some("i2"), &["roundrobin"]), V);
        assert!(joined(&mut c, t).is_none());
        assert_eq!(state(&c), GroupState::PreparingRebalance);
    }

    #[test]
    fn a_full_group_refuses_new_members() {
        let mut c = Coordinator::new(GroupConfig { max_size: 1, initial_rebalance_delay_ms: 0, ..Default::default() });
        let (a, ta) = new_member(&mut c, 0);
        c.fire_timers(0);
        assert!(joined(&mut c, ta).is_some());
        let t = join(&mut c, 1, request("", None, &["range"]), V);
        let id = joined(&mut c, t).unwrap().member_id;
        let t = join(&mut c, 1, request(&id, None, &["range"]), V);
        let r = joined(&mut c, t).unwrap();
        assert_eq!((r.error, r.member_id.as_str()), (ErrorCode::GroupMaxSizeReached, ""));
        let t = join(&mut c, 1, request(&a, None, &["range"]), V);
        assert_eq!(joined(&mut c, t).unwrap().error, ErrorCode::None, "members already in are accepted");
    }

    #[test]
    fn protocol_mismatches_and_unknown_members_are_refused() {
        let mut c = coordinator(0);
        let (a, ta) = new_member(&mut c, 0);
        c.fire_timers(0);
        let _ = joined(&mut c, ta);
        let t = join(&mut c, 1, request("", None, &["roundrobin"]), V);
        assert_eq!(joined(&mut c, t).unwrap().error, ErrorCode::InconsistentGroupProtocol);
        let t = join(&mut c, 1, request("nobody", None, &["range"]), V);
        assert_eq!(joined(&mut c, t).unwrap().error, ErrorCode::UnknownMemberId);
        let mut other = request("x", None, &["range"]);
        other.group_id = "missing".into();
        let t = join(&mut c, 1, other, V);
        assert_eq!(joined(&mut c, t).unwrap().error, ErrorCode::UnknownMemberId);
        let s = sync(&mut c, 1, "nobody", 1, &[]);
        assert_eq!(synced(&mut c, s).unwrap().error, ErrorCode::UnknownMemberId);
        let s = sync(&mut c, 1, &a, 7, &[]);
        assert_eq!(synced(&mut c, s).unwrap().error, ErrorCode::IllegalGeneration);
        let mut req = SyncRequest {
            group_id: "g".into(),
            generation: 1,
            member_id: a.clone(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("roundrobin".into()),
            assignments: Vec::new(),
        };
        let ticket = c.new_ticket();
        c.sync(1, req.clone(), Waiter { ticket, version: 5 });
        assert_eq!(synced(&mut c, ticket).unwrap().error, ErrorCode::InconsistentGroupProtocol);
        req.protocol_name = Some("range".into());
        let ticket = c.new_ticket();
        c.sync(1, req, Waiter { ticket, version: 5 });
        let r = synced(&mut c, ticket).unwrap();
        assert_eq!((r.error, r.protocol_name.as_deref()), (ErrorCode::None, Some("range")));
    }
}
