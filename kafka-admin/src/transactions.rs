//! Transactions: ListTransactions (every broker) and DescribeTransactions (each id's
//! transaction coordinator).

use std::collections::{BTreeMap, BTreeSet};

use kafka_client::TopicPartition;
use kafka_protocol::messages::{DescribeTransactionsRequest, ListTransactionsRequest};
use kafka_protocol::ApiKey;

use crate::client::{check, fill_missing, AdminClient};
use crate::configs::join_all;
use crate::error::{Error, Result};

/// A transactional producer in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The `transactional.id`.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The state (`Ongoing`, `CompleteCommit`, `Empty`, ...).
    pub state: String,
}

/// A described transactional producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The coordinator's node id.
    pub coordinator: i32,
    /// The state.
    pub state: String,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub transaction_timeout_ms: i32,
    /// When the open transaction started, if one is open.
    pub transaction_start_time_ms: Option<i64>,
    /// The partitions in the open transaction.
    pub partitions: Vec<TopicPartition>,
}

fn txn_resource(id: &str) -> String {
    format!("transactional id {id}")
}

impl AdminClient {
    /// Lists the transactional producers of every broker (each lists those it
    /// coordinates). Needs ListTransactions (Kafka 3.0+).
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>> {
        let brokers: Vec<i32> = {
            let metadata = self.run_one("Metadata", || async { Ok(self.client.refresh_metadata().await?) }).await?;
            let mut ids: Vec<i32> = metadata.brokers.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        let results = self
            .run("ListTransactions", brokers, |brokers| async move {
                let futures = brokers.into_iter().map(|id| async move {
                    let r: Result<Vec<TransactionListing>> = async {
                        let conn = self.node(id).await?;
                        let version = conn.version(ApiKey::ListTransactions, 0)?;
                        let request = ListTransactionsRequest { duration_filter: -1, ..Default::default() };
                        let response = conn.request_at(&request, version).await?;
                        check(|| format!("broker {id}"), response.error_code, None)?;
                        Ok(response
                            .transaction_states
                            .into_iter()
                            .map(|t| TransactionListing {
                                transactional_id: t.transactional_id,
                                producer_id: t.producer_id,
                                state: t.transaction_state,
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
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// Describes transactional producers, each at its transaction coordinator. An unknown
    /// id fails alone with TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe_transactions<S: AsRef<str>>(
        &self,
        ids: impl IntoIterator<Item = S>,
    ) -> Result<BTreeMap<String, Result<TransactionDescription>>> {
        let keys: Vec<String> =
            ids.into_iter().map(|s| s.as_ref().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        self.run("DescribeTransactions", keys, |keys| async move {
            let mut out = Vec::new();
            for id in &keys {
                let r: Result<TransactionDescription> = async {
                    let conn = self.coordinator(1, id, &txn_resource(id)).await?;
                    let version = conn.version(ApiKey::DescribeTransactions, 0)?;
                    let request =
                        DescribeTransactionsRequest { transactional_ids: vec![id.clone()], ..Default::default() };
                    let response = conn.request_at(&request, version).await?;
                    let state = response
                        .transaction_states
                        .into_iter()
                        .find(|s| &s.transactional_id == id)
                        .ok_or_else(|| Error::invalid(txn_resource(id), "missing from the broker's answer"))?;
                    check(|| txn_resource(id), state.error_code, None)?;
                    Ok(TransactionDescription {
                        coordinator: conn.address().node_id,
                        state: state.transaction_state,
                        producer_id: state.producer_id,
                        producer_epoch: state.producer_epoch,
                        transaction_timeout_ms: state.transaction_timeout_ms,
                        transaction_start_time_ms: (state.transaction_start_time_ms >= 0)
                            .then_some(state.transaction_start_time_ms),
                        partitions: state
                            .topics
                            .into_iter()
                            .flat_map(|t| {
                                let topic = t.topic;
                                t.partitions.into_iter().map(move |p| TopicPartition::new(topic.clone(), p))
                            })
                            .collect(),
                    })
                }
                .await;
                out.push((id.clone(), r));
            }
            fill_missing(&keys, &mut out, |k| txn_resource(k));
            Ok(out)
        })
        .await
    }
}
