//! Consumer groups and their offsets: ListGroups (every broker), DescribeGroups,
//! DeleteGroups, OffsetFetch, OffsetCommit and OffsetDelete (the group's coordinator).

use std::collections::{BTreeMap, BTreeSet};

use kafka_client::conn::Connection;
use kafka_client::{OffsetAndMetadata, TopicPartition};
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest,
};
use kafka_protocol::{ApiKey, ErrorCode};

use crate::client::{check, fill_missing, AdminClient, Attempt};
use crate::configs::join_all;
use crate::error::{Error, Result};

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer` for consumer groups, empty for groups that only
    /// commit offsets).
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...), when the broker says (ListGroups v4+, Kafka 2.6+).
    pub state: Option<String>,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host, as the coordinator saw it (`/127.0.0.1`).
    pub host: String,
    /// The partitions assigned to it (empty for groups that are not consumer groups).
    pub assignment: Vec<TopicPartition>,
}

/// A described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`
    /// (a group that does not exist); for a KIP-848 group `Empty`, `Assigning`,
    /// `Reconciling` or `Stable`, as Kafka names them.
    pub state: String,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The chosen assignor (`range`, `cooperative-sticky`, ...); for a KIP-848 group, the
    /// server-side assignor (`uniform`, `range`).
    pub protocol: String,
    /// `classic` (JoinGroup/SyncGroup membership) or `consumer` (KIP-848,
    /// `group.protocol=consumer`).
    pub group_type: String,
    /// The coordinator's node id.
    pub coordinator: i32,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// A KIP-848 group as ConsumerGroupDescribe tells it.
fn consumer_group_description(g: DescribedGroup, coordinator: i32) -> GroupDescription {
    GroupDescription {
        group_id: g.group_id,
        state: g.group_state,
        protocol_type: "consumer".to_owned(),
        protocol: g.assignor_name,
        group_type: "consumer".to_owned(),
        coordinator,
        members: g
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id,
                group_instance_id: m.instance_id,
                client_id: m.client_id,
                host: m.client_host,
                assignment: m
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .flat_map(|t| {
                        let topic = t.topic_name;
                        t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn group_resource(group: &str) -> String {
    format!("group {group}")
}

fn partition_resource(group: &str, tp: &TopicPartition) -> String {
    format!("group {group} partition {}-{}", tp.topic, tp.partition)
}

impl AdminClient {
    /// Finds the coordinators of `groups` and runs `per_coordinator` on each coordinator's
    /// share concurrently; lookups and shares that fail give each of their groups the error.
    async fn by_coordinator<T, F, Fut>(&self, groups: Vec<String>, per_coordinator: F) -> Attempt<String, T>
    where
        F: Fn(Connection, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Attempt<String, T>>,
    {
        let mut out: Vec<(String, Result<T>)> = Vec::new();
        let mut shares: BTreeMap<u64, (Connection, Vec<String>)> = BTreeMap::new();
        for g in &groups {
            match self.coordinator(0, g, &group_resource(g)).await {
                Ok(c) => shares.entry(c.id()).or_insert_with(|| (c, Vec::new())).1.push(g.clone()),
                Err(e) => out.push((g.clone(), Err(e))),
            }
        }
        let futures = shares.into_values().map(|(conn, share)| {
            let fut = per_coordinator(conn, share.clone());
            async move {
                match fut.await {
                    Ok(r) => r,
                    Err(e) => share.into_iter().map(|g| (g, Err(Error::Client(e.clone())))).collect(),
                }
            }
        });
        for part in join_all(futures).await {
            out.extend(part);
        }
        fill_missing(&groups, &mut out, |g| group_resource(g));
        Ok(out)
    }

    /// Lists the consumer groups of every broker (each broker lists those it coordinates),
    /// with their state. Groups of other protocol types (Connect) are left out. Fails when a
    /// broker cannot answer within `default.api.timeout.ms`, naming it.
    pub async fn list_consumer_groups(&self) -> Result<Vec<GroupListing>> {
        let brokers: Vec<i32> = {
            let metadata = self.run_one("Metadata", || async { Ok(self.client.refresh_metadata().await?) }).await?;
            let mut ids: Vec<i32> = metadata.brokers.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        let results = self
            .run("ListGroups", brokers, |brokers| async move {
                let futures = brokers.into_iter().map(|id| async move {
                    let r: Result<Vec<GroupListing>> = async {
                        let conn = self.node(id).await?;
                        let version = conn.version(ApiKey::ListGroups, 0)?;
                        let response = conn.request_at(&ListGroupsRequest::default(), version).await?;
                        check(|| format!("broker {id}"), response.error_code, None)?;
                        Ok(response
                            .groups
                            .into_iter()
                            .filter(|g| g.protocol_type.is_empty() || g.protocol_type == "consumer")
                            .map(|g| GroupListing {
                                group_id: g.group_id,
                                protocol_type: g.protocol_type,
                                state: (version >= 4).then_some(g.group_state),
                            })
                            .collect())
                    }
                    .await;
                    (id, r)
                });
                Ok(join_all(futures).await)
            })
            .await?;
        let mut out = Vec::new();
        for (_, r) in results {
            out.extend(r?);
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// Describes consumer groups: state, protocol, and each member with its client id, host
    /// and assignment. As the Java admin client does, each group is first asked for with
    /// ConsumerGroupDescribe (KIP-848 groups, Kafka 4 and the bundled broker); groups that
    /// are not KIP-848 groups (GROUP_ID_NOT_FOUND), and all groups on brokers without that
    /// API, are described with DescribeGroups. A group that does not exist is described with
    /// state `Dead` (as Kafka does) or fails with GROUP_ID_NOT_FOUND (Kafka 4 brokers).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = kafka_broker::Cluster::builder().start().await?;
    /// let admin = kafka_admin::AdminClient::new(kafka_admin::AdminConfig::new(&cluster.bootstrap_servers()))?;
    /// let groups = admin.describe_consumer_groups(["nobody"]).await?;
    /// assert_eq!(groups["nobody"].clone()?.state, "Dead");
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn describe_consumer_groups<S: AsRef<str>>(
        &self,
        groups: impl IntoIterator<Item = S>,
    ) -> Result<BTreeMap<String, Result<GroupDescription>>> {
        let keys: Vec<String> =
            groups.into_iter().map(|s| s.as_ref().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut described = self
            .run("ConsumerGroupDescribe", keys.clone(), |keys| {
                self.by_coordinator(keys, |conn, share| async move {
                    let Ok(version) = conn.version(ApiKey::ConsumerGroupDescribe, 0) else {
                        // No KIP-848 on this broker: every group is a classic one.
                        return Ok(share.into_iter().map(|g| (g, Ok(None))).collect());
                    };
                    let request = ConsumerGroupDescribeRequest { group_ids: share, ..Default::default() };
                    let response = conn.request_at(&request, version).await?;
                    let coordinator = conn.address().node_id;
                    Ok(response
                        .groups
                        .into_iter()
                        .map(|g| {
                            let id = g.group_id.clone();
                            let r = match ErrorCode::from_code(g.error_code) {
                                // Not a KIP-848 group: ask again with DescribeGroups.
                                ErrorCode::GroupIdNotFound => Ok(None),
                                _ => check(|| group_resource(&id), g.error_code, g.error_message.clone())
                                    .map(|()| Some(consumer_group_description(g, coordinator))),
                            };
                            (id, r)
                        })
                        .collect())
                })
            })
            .await?;
        let classic: Vec<String> =
            described.iter().filter(|(_, r)| matches!(r, Ok(None))).map(|(g, _)| g.clone()).collect();
        let mut out: BTreeMap<String, Result<GroupDescription>> = BTreeMap::new();
        for (g, r) in std::mem::take(&mut described) {
            match r {
                Ok(Some(d)) => {
                    out.insert(g, Ok(d));
                }
                Ok(None) => {}
                Err(e) => {
                    out.insert(g, Err(e));
                }
            }
        }
        if !classic.is_empty() {
            out.extend(self.describe_classic_groups(classic).await?);
        }
        Ok(out)
    }

    /// DescribeGroups for groups that are not KIP-848 groups.
    async fn describe_classic_groups(&self, keys: Vec<String>) -> Result<BTreeMap<String, Result<GroupDescription>>> {
        self.run("DescribeGroups", keys, |keys| {
            self.by_coordinator(keys, |conn, share| async move {
                let version = conn.version(ApiKey::DescribeGroups, 0)?;
                let request = DescribeGroupsRequest { groups: share.clone(), ..Default::default() };
                let response = conn.request_at(&request, version).await?;
                let coordinator = conn.address().node_id;
                let mut out = Vec::new();
                for g in response.groups {
                    let id = g.group_id.clone();
                    let r = check(|| group_resource(&id), g.error_code, None).map(|()| GroupDescription {
                        group_id: g.group_id,
                        state: g.group_state,
                        protocol_type: g.protocol_type.clone(),
                        protocol: g.protocol_data,
                        group_type: "classic".to_owned(),
                        coordinator,
                        members: g
                            .members
                            .into_iter()
                            .map(|m| {
                                let assignment = if g.protocol_type == "consumer" && !m.member_assignment.is_empty() {
                                    kafka_protocol::consumer_protocol::decode_assignment(m.member_assignment)
                                        .map(|(_, a)| {
                                            a.assigned_partitions
                                                .into_iter()
                                                .flat_map(|t| {
                                                    let topic = t.topic;
                                                    t.partitions
                                                        .into_iter()
                                                        .map(move |p| TopicPartition::new(topic.clone(), p))
                                                })
                                                .collect()
                                        })
                                        .unwrap_or_default()
                                } else {
                                    Vec::new()
                                };
                                MemberDescription {
                                    member_id: m.member_id,
                                    group_instance_id: m.group_instance_id,
                                    client_id: m.client_id,
                                    host: m.client_host,
                                    assignment,
                                }
                            })
                            .collect(),
                    });
                    out.push((id, r));
                }
                Ok(out)
            })
        })
        .await
    }

    /// Deletes consumer groups with their offsets. A group with members fails alone with
    /// NON_EMPTY_GROUP; one that does not exist with GROUP_ID_NOT_FOUND.
    pub async fn delete_consumer_groups<S: AsRef<str>>(
        &self,
        groups: impl IntoIterator<Item = S>,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let keys: Vec<String> =
            groups.into_iter().map(|s| s.as_ref().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        self.run("DeleteGroups", keys, |keys| {
            self.by_coordinator(keys, |conn, share| async move {
                let version = conn.version(ApiKey::DeleteGroups, 0)?;
                let request = DeleteGroupsRequest { groups_names: share, ..Default::default() };
                let response = conn.request_at(&request, version).await?;
                Ok(response
                    .results
                    .into_iter()
                    .map(|r| {
                        let id = r.group_id;
                        let result = check(|| group_resource(&id), r.error_code, None);
                        (id, result)
                    })
                    .collect())
            })
        })
        .await
    }

    /// The committed offsets of a group: of `partitions`, or of every partition it has
    /// committed for when `None`. A listed partition without a commit maps to `Ok(None)`.
    /// Group-wide failures (GROUP_ID_NOT_FOUND, an unreachable coordinator) fail the call.
    pub async fn list_consumer_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, Result<Option<OffsetAndMetadata>>>> {
        let group_id = group.to_owned();
        self.run_one("OffsetFetch", || {
            let group_id = group_id.clone();
            async move {
                let conn = self.coordinator(0, &group_id, &group_resource(&group_id)).await?;
                let version = conn.version(ApiKey::OffsetFetch, 1)?;
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in partitions.unwrap_or_default() {
                    by_topic.entry(&tp.topic).or_default().push(tp.partition);
                }
                // v1 has no "all partitions" form; v2+ take a null topic list for that.
                if partitions.is_none() && version < 2 {
                    return Err(Error::invalid(
                        group_resource(&group_id),
                        "listing every committed offset needs OffsetFetch v2 (Kafka 0.10.2+)",
                    ));
                }
                let request = if version >= 8 {
                    OffsetFetchRequest {
                        groups: vec![OffsetFetchRequestGroup {
                            group_id: group_id.clone(),
                            member_epoch: -1,
                            topics: partitions.map(|_| {
                                by_topic
                                    .iter()
                                    .map(|(t, p)| OffsetFetchRequestTopics {
                                        name: (*t).to_owned(),
                                        partition_indexes: p.clone(),
                                        ..Default::default()
                                    })
                                    .collect()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                } else {
                    OffsetFetchRequest {
                        group_id: group_id.clone(),
                        topics: partitions.map(|_| {
                            by_topic
                                .iter()
                                .map(|(t, p)| OffsetFetchRequestTopic {
                                    name: (*t).to_owned(),
                                    partition_indexes: p.clone(),
                                    ..Default::default()
                                })
                                .collect()
                        }),
                        ..Default::default()
                    }
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = BTreeMap::new();
                let mut put = |topic: String, partition: i32, code: i16, offset: i64, epoch: i32, metadata| {
                    let tp = TopicPartition::new(topic, partition);
                    let r = check(|| partition_resource(&group_id, &tp), code, None).map(|()| {
                        (offset >= 0).then(|| OffsetAndMetadata {
                            offset,
                            leader_epoch: (epoch >= 0).then_some(epoch),
                            metadata,
                        })
                    });
                    if partitions.is_some() || !matches!(r, Ok(None)) {
                        out.insert(tp, r);
                    }
                };
                if version >= 8 {
                    for g in response.groups {
                        check(|| group_resource(&group_id), g.error_code, None)?;
                        for t in g.topics {
                            for p in t.partitions {
                                put(
                                    t.name.clone(),
                                    p.partition_index,
                                    p.error_code,
                                    p.committed_offset,
                                    p.committed_leader_epoch,
                                    p.metadata,
                                );
                            }
                        }
                    }
                } else {
                    check(|| group_resource(&group_id), response.error_code, None)?;
                    for t in response.topics {
                        for p in t.partitions {
                            put(
                                t.name.clone(),
                                p.partition_index,
                                p.error_code,
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.metadata,
                            );
                        }
                    }
                }
                Ok(out)
            }
        })
        .await
    }

    /// Sets a group's committed offsets (as a commit from outside the group). Kafka refuses
    /// this while the group has members: each partition then fails with UNKNOWN_MEMBER_ID
    /// (stop the consumers first).
    pub async fn alter_consumer_group_offsets(
        &self,
        group: &str,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<BTreeMap<TopicPartition, Result<()>>> {
        let keys: Vec<TopicPartition> = offsets.keys().cloned().collect();
        let offsets = &offsets;
        self.run("OffsetCommit", keys, |keys| async move {
            let conn = match self.coordinator(0, group, &group_resource(group)).await {
                Ok(c) => c,
                Err(Error::Client(e)) => return Err(e),
                Err(e) => return Ok(keys.into_iter().map(|k| (k, Err(e.clone()))).collect()),
            };
            let version = conn.version(ApiKey::OffsetCommit, 2)?;
            let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
            for tp in &keys {
                let Some(o) = offsets.get(tp) else { continue };
                by_topic.entry(&tp.topic).or_default().push(OffsetCommitRequestPartition {
                    partition_index: tp.partition,
                    committed_offset: o.offset,
                    committed_leader_epoch: o.leader_epoch.unwrap_or(-1),
                    commit_timestamp: -1,
                    committed_metadata: Some(o.metadata.clone().unwrap_or_default()),
                    ..Default::default()
                });
            }
            let request = OffsetCommitRequest {
                group_id: group.to_owned(),
                generation_id_or_member_epoch: -1,
                member_id: String::new(),
                retention_time_ms: -1,
                topics: by_topic
                    .into_iter()
                    .map(|(t, partitions)| OffsetCommitRequestTopic {
                        name: t.to_owned(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let response = conn.request_at(&request, version).await?;
            let mut out = Vec::new();
            for t in response.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = check(|| partition_resource(group, &tp), p.error_code, None);
                    out.push((tp, r));
                }
            }
            fill_missing(&keys, &mut out, |tp| partition_resource(group, tp));
            Ok(out)
        })
        .await
    }

    /// Deletes a group's committed offsets of some partitions (OffsetDelete, Kafka 2.4+).
    /// A partition of a topic the group is still subscribed to fails with
    /// GROUP_SUBSCRIBED_TO_TOPIC.
    pub async fn delete_consumer_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Result<()>>> {
        let keys: Vec<TopicPartition> = partitions.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        self.run("OffsetDelete", keys, |keys| async move {
            let conn = match self.coordinator(0, group, &group_resource(group)).await {
                Ok(c) => c,
                Err(Error::Client(e)) => return Err(e),
                Err(e) => return Ok(keys.into_iter().map(|k| (k, Err(e.clone()))).collect()),
            };
            let version = conn.version(ApiKey::OffsetDelete, 0)?;
            let mut by_topic: BTreeMap<&str, Vec<OffsetDeleteRequestPartition>> = BTreeMap::new();
            for tp in &keys {
                by_topic
                    .entry(&tp.topic)
                    .or_default()
                    .push(OffsetDeleteRequestPartition { partition_index: tp.partition, ..Default::default() });
            }
            let request = OffsetDeleteRequest {
                group_id: group.to_owned(),
                topics: by_topic
                    .into_iter()
                    .map(|(t, partitions)| OffsetDeleteRequestTopic {
                        name: t.to_owned(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let response = conn.request_at(&request, version).await?;
            let group_code = ErrorCode::from_code(response.error_code);
            if group_code != ErrorCode::None {
                let e = Error::kafka(group_resource(group), group_code, None);
                return Ok(keys.into_iter().map(|k| (k, Err(e.clone()))).collect());
            }
            let mut out = Vec::new();
            for t in response.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                    let r = check(|| partition_resource(group, &tp), p.error_code, None);
                    out.push((tp, r));
                }
            }
            fill_missing(&keys, &mut out, |tp| partition_resource(group, tp));
            Ok(out)
        })
        .await
    }
}
