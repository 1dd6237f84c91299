//! The server-side assignors of consumer groups (KIP-848), named as Kafka names them:
//! `uniform` (Kafka's `UniformAssignor`, the default) and `range` (`RangeAssignor`).
//!
//! Both are pure functions from the members' subscriptions, the subscribed topics' partition
//! counts and the previous target assignment to the next target assignment. Their exact
//! placement is not part of the protocol (clients apply whatever the coordinator says), so
//! these follow Kafka's rules rather than its code:
//!
//! - `uniform`: every member gets as even a share as the subscriptions allow; partitions stay
//!   with their previous owner while it stays within its share (sticky), the rest go to the
//!   subscribed member with the fewest partitions (ties by member id).
//! - `range`: per topic, the subscribed members in member-id order get consecutive ranges,
//!   the first `partitions % members` one partition more (co-partitioned topics land on the
//!   same members).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::primitives::Uuid;

/// Partitions by topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this coordinator has, the default first (Kafka's `group.consumer.assignors`).
pub(crate) const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub(crate) struct AssignorMember<'a> {
    pub id: &'a str,
    /// Subscribed topics that exist, by id.
    pub topics: BTreeSet<Uuid>,
    /// The member's previous target assignment.
    pub previous: Option<&'a Assignment>,
}

/// Runs assignor `name` (`uniform` if unknown). `partitions`: each subscribed topic's
/// partition count, by id.
pub(crate) fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn empty_result(members: &[AssignorMember<'_>]) -> BTreeMap<String, Assignment> {
    members.iter().map(|m| (m.id.to_string(), Assignment::new())).collect()
}

fn range(members: &[AssignorMember<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut result = empty_result(members);
    for (topic, count) in partitions {
        let mut subscribers: Vec<&str> = members.iter().filter(|m| m.topics.contains(topic)).map(|m| m.id).collect();
        subscribers.sort_unstable();
        let n = i32::try_from(subscribers.len()).unwrap_or(i32::MAX);
        if n == 0 {
            continue;
        }
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in (0..).zip(subscribers) {
            let take = each + i32::from(i < extra);
            if take > 0 {
                let parts = result.entry(member.to_string()).or_default().entry(*topic).or_default();
                parts.extend(next..next + take);
            }
            next += take;
        }
    }
    result
}

fn uniform(members: &[AssignorMember<'_>], partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut result = empty_result(members);
    let mut sorted: Vec<&AssignorMember<'_>> = members.iter().collect();
    sorted.sort_unstable_by_key(|m| m.id);
    // Each member's fair share: the partitions it can consume divided by the members that
    // can consume them, rounded up (exact for the common case of identical subscriptions).
    let quota = |m: &AssignorMember<'_>| -> usize {
        let mut share = 0usize;
        for (topic, count) in partitions.iter().filter(|(t, _)| m.topics.contains(*t)) {
            let subscribers = members.iter().filter(|o| o.topics.contains(topic)).count().max(1);
            share += usize::try_from(*count).unwrap_or(0).div_ceil(subscribers);
        }
        share
    };
    let homogeneous = sorted.windows(2).all(|w| w.first().map(|a| &a.topics) == w.get(1).map(|b| &b.topics));
    let total: usize = partitions
        .iter()
        .filter(|(t, _)| sorted.iter().any(|m| m.topics.contains(*t)))
        .map(|(_, c)| usize::try_from(*c).unwrap_or(0))
        .sum();
    // With identical subscriptions: `total / n` each and one more for `total % n` members.
    let (min_quota, mut extras) = match (homogeneous, sorted.len()) {
        (true, n) if n > 0 => (total / n, total % n),
        _ => (0, 0),
    };
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    // Sticky phase: previous partitions stay, up to the member's share.
    for m in &sorted {
        let limit = if homogeneous { min_quota } else { quota(m) };
        let mut kept = 0usize;
        let mut leftover = Vec::new();
        for (topic, parts) in m.previous.into_iter().flatten() {
            let Some(count) = partitions.get(topic) else { continue };
            if !m.topics.contains(topic) {
                continue;
            }
            for p in parts.iter().filter(|p| **p >= 0 && **p < *count) {
                if taken.contains(&(*topic, *p)) {
                    continue;
                }
                if kept < limit {
                    taken.insert((*topic, *p));
                    result.entry(m.id.to_string()).or_default().entry(*topic).or_default().insert(*p);
                    kept += 1;
                } else {
                    leftover.push((*topic, *p));
                }
            }
        }
        // A member that had more than its minimum keeps one more while extra slots remain.
        if homogeneous && extras > 0 {
            if let Some((topic, p)) = leftover.into_iter().find(|tp| !taken.contains(tp)) {
                taken.insert((topic, p));
                result.entry(m.id.to_string()).or_default().entry(topic).or_default().insert(p);
                kept += 1;
                extras -= 1;
            }
        }
        counts.insert(m.id, kept);
    }
    // Everything else goes to the subscribed member with the fewest partitions, preferring
    // members under their share.
    for (topic, count) in partitions {
        for p in 0..*count {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let best = sorted
                .iter()
                .filter(|m| m.topics.contains(topic))
                .min_by_key(|m| {
                    let have = counts.get(m.id).copied().unwrap_or(0);
                    let cap = if homogeneous { min_quota + usize::from(extras > 0) } else { quota(m) };
                    (have >= cap, have, m.id)
                })
                .map(|m| m.id);
            let Some(best) = best else { continue };
            let have = counts.entry(best).or_insert(0);
            if homogeneous && *have >= min_quota {
                extras = extras.saturating_sub(1);
            }
            *have += 1;
            taken.insert((*topic, p));
            result.entry(best.to_string()).or_default().entry(*topic).or_default().insert(p);
        }
    }
    for a in result.values_mut() {
        a.retain(|_, parts| !parts.is_empty());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u64) -> Uuid {
        Uuid::from_u64_pair(1, n)
    }

    fn member<'a>(id: &'a str, topics: &[u64], previous: Option<&'a Assignment>) -> AssignorMember<'a> {
        AssignorMember { id, topics: topics.iter().map(|t| topic(*t)).collect(), previous }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn all_once(result: &BTreeMap<String, Assignment>, partitions: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in result.values() {
            for (t, parts) in a {
                for p in parts {
                    assert!(seen.insert((*t, *p)), "{t:?}-{p} assigned twice");
                }
            }
        }
        let expected: usize = partitions.values().map(|c| *c as usize).sum();
        assert_eq!(seen.len(), expected, "every partition assigned");
    }

    #[test]
    fn uniform_spreads_evenly_and_is_sticky() {
        let partitions: BTreeMap<Uuid, i32> = [(topic(1), 6)].into();
        let first = assign("uniform", &[member("a", &[1], None)], &partitions);
        assert_eq!(count(&first["a"]), 6);
        let a_prev = first["a"].clone();
        let second = assign("uniform", &[member("a", &[1], Some(&a_prev)), member("b", &[1], None)], &partitions);
        all_once(&second, &partitions);
        assert_eq!((count(&second["a"]), count(&second["b"])), (3, 3));
        assert!(second["a"][&topic(1)].is_subset(&a_prev[&topic(1)]), "a keeps what it had");
        let (a2, b2) = (second["a"].clone(), second["b"].clone());
        let third = assign(
            "uniform",
            &[member("a", &[1], Some(&a2)), member("b", &[1], Some(&b2)), member("c", &[1], None)],
            &partitions,
        );
        all_once(&third, &partitions);
        for m in ["a", "b", "c"] {
            assert_eq!(count(&third[m]), 2, "{m}");
        }
        assert!(third["a"][&topic(1)].is_subset(&a2[&topic(1)]));
        assert!(third["b"][&topic(1)].is_subset(&b2[&topic(1)]));
        // Seven partitions over three: 3, 2, 2.
        let seven: BTreeMap<Uuid, i32> = [(topic(1), 7)].into();
        let r = assign("uniform", &[member("a", &[1], None), member("b", &[1], None), member("c", &[1], None)], &seven);
        all_once(&r, &seven);
        let mut sizes: Vec<usize> = r.values().map(count).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [2, 2, 3]);
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        let partitions: BTreeMap<Uuid, i32> = [(topic(1), 4), (topic(2), 2)].into();
        let r = assign("uniform", &[member("a", &[1], None), member("b", &[1, 2], None)], &partitions);
        all_once(&r, &partitions);
        assert!(!r["a"].contains_key(&topic(2)), "a is not subscribed to topic 2");
        assert_eq!(count(&r["a"]) + count(&r["b"]), 6);
        assert!(count(&r["a"]) >= 2);
        let none = assign("uniform", &[member("a", &[], None)], &partitions);
        assert!(none["a"].is_empty());
    }

    #[test]
    fn range_gives_consecutive_ranges_per_topic() {
        let partitions: BTreeMap<Uuid, i32> = [(topic(1), 5), (topic(2), 5)].into();
        let r = assign("range", &[member("b", &[1, 2], None), member("a", &[1, 2], None)], &partitions);
        all_once(&r, &partitions);
        assert_eq!(r["a"][&topic(1)], [0, 1, 2].into());
        assert_eq!(r["b"][&topic(1)], [3, 4].into());
        assert_eq!(r["a"][&topic(2)], r["a"][&topic(1)], "co-partitioned");
        let one: BTreeMap<Uuid, i32> = [(topic(1), 1)].into();
        let r = assign("range", &[member("a", &[1], None), member("b", &[1], None)], &one);
        assert_eq!(r["a"][&topic(1)], [0].into());
        assert!(r["b"].is_empty());
    }
}
