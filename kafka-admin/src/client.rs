//! The handle, its settings, and the plumbing every call shares: finding the controller, a
//! leader or a coordinator, and the per-resource retry loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_client::conn::Connection;
use kafka_client::metadata::Metadata;
use kafka_client::{Client, ClientConfig};
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::time::Instant;

use crate::error::{is_rediscover, whole_request_retriable, Error, Result};

/// Settings of the admin client: the connection settings shared by every client, and how
/// long one call may keep retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Bootstrap servers, timeouts and backoffs (`bootstrap.servers`, `request.timeout.ms`,
    /// `retry.backoff.ms`, ...).
    pub client: ClientConfig,
    /// `default.api.timeout.ms`: how long one call may take, retries included. Default 60 s
    /// (Java's).
    pub default_api_timeout: Duration,
}

impl AdminConfig {
    /// Settings for the given bootstrap servers (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Self {
        AdminConfig {
            client: ClientConfig { client_id: "kafka-sdk-admin".to_owned(), ..ClientConfig::new(bootstrap_servers) },
            default_api_timeout: Duration::from_millis(60_000),
        }
    }

    /// Applies one setting by its Java name (`default.api.timeout.ms` or any client-wide
    /// setting). An unknown name or a bad value is an error naming the key.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        if key == "default.api.timeout.ms" {
            let ms: u64 = value.trim().parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                kafka_client::Error::Config { key: key.to_owned(), reason: format!("not a positive number: {value}") }
            })?;
            self.default_api_timeout = Duration::from_millis(ms);
            return Ok(self);
        }
        if self.client.apply(key, value)? {
            Ok(self)
        } else {
            Err(kafka_client::Error::Config { key: key.to_owned(), reason: "not an admin client setting".to_owned() }
                .into())
        }
    }
}

/// An async admin client. Cheap to clone; every clone shares the connections.
///
/// Calls are cancel safe in the sense that dropping a call's future stops it, but a request
/// already sent may still take effect on the broker (a topic may be created).
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub(crate) client: Client,
    pub(crate) config: Arc<AdminConfig>,
}

/// What one attempt of a per-resource call returns: each resource with its result, or an
/// error of the whole attempt (no broker reachable, for example).
pub(crate) type Attempt<K, T> = std::result::Result<Vec<(K, Result<T>)>, kafka_client::Error>;

impl AdminClient {
    /// A client for the cluster behind `config.client.bootstrap_servers`. Must be called
    /// inside a tokio runtime; nothing is connected until the first call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = kafka_broker::Cluster::builder().brokers(3).start().await?;
    /// let admin = kafka_admin::AdminClient::new(
    ///     kafka_admin::AdminConfig::new(&cluster.bootstrap_servers()).set("default.api.timeout.ms", "10000")?,
    /// )?;
    /// let cluster_info = admin.describe_cluster().await?;
    /// assert_eq!(cluster_info.brokers.len(), 3);
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(config: AdminConfig) -> Result<AdminClient> {
        let client = Client::new(config.client.clone(), false)?;
        Ok(AdminClient { client, config: Arc::new(config) })
    }

    /// The connection layer underneath (shared metadata and connections).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Closes every connection; later calls fail.
    pub fn close(&self) {
        self.client.close();
    }

    pub(crate) fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.client.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.default_api_timeout
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.client.retry_backoff.as_secs_f64();
        let max = self.config.client.retry_backoff_max.as_secs_f64().max(base);
        Duration::from_secs_f64((base * 2f64.powi(attempt.min(20) as i32)).min(max))
    }

    /// Runs `attempt` for the resources still pending until each has a final result:
    /// resources that failed with an error saying the controller, coordinator or leader
    /// moved (or a transport error) are tried again after a backoff, with fresh metadata;
    /// others are final. At `default.api.timeout.ms` each pending resource gets its last
    /// error. A failure of a whole attempt that cannot be retried, or that persists to the
    /// deadline while no resource has a result, fails the call.
    pub(crate) async fn run<K, T, F, Fut>(
        &self,
        what: &str,
        keys: Vec<K>,
        mut attempt: F,
    ) -> Result<BTreeMap<K, Result<T>>>
    where
        K: Ord + Clone,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Attempt<K, T>>,
    {
        let deadline = self.deadline();
        let mut done: BTreeMap<K, Result<T>> = BTreeMap::new();
        let mut pending = keys;
        let mut tries = 0u32;
        // The latest retriable failure, per resource and of a whole attempt: what the caller
        // sees when the deadline passes.
        let mut last: BTreeMap<K, Result<T>> = BTreeMap::new();
        let mut last_whole: Option<kafka_client::Error> = None;
        let timeout_ms = self.config.default_api_timeout.as_millis() as u64;
        let timeout = |last_whole: &Option<kafka_client::Error>| kafka_client::Error::Timeout {
            what: match last_whole {
                Some(e) => format!("{what} (last error: {e})"),
                None => format!("{what} (no answer from {})", self.config.client.bootstrap_servers.join(",")),
            },
            setting: "default.api.timeout.ms",
            timeout_ms,
        };
        loop {
            // An attempt cannot outlive the call (a connection setup, a reconnect backoff or a
            // request timeout may be longer than default.api.timeout.ms).
            let (outcome, expired) = match tokio::time::timeout_at(deadline, attempt(pending.clone())).await {
                Ok(outcome) => (Some(outcome), false),
                Err(_) => (None, true),
            };
            match outcome {
                Some(Ok(results)) => {
                    for (k, r) in results {
                        if !pending.contains(&k) || done.contains_key(&k) {
                            continue;
                        }
                        let again = match &r {
                            Err(Error::Kafka { code, .. }) => is_rediscover(*code),
                            Err(Error::Client(e)) => whole_request_retriable(e),
                            _ => false,
                        };
                        if again {
                            last.insert(k, r);
                        } else {
                            last.remove(&k);
                            done.insert(k, r);
                        }
                    }
                }
                Some(Err(e)) if whole_request_retriable(&e) => last_whole = Some(e),
                Some(Err(e)) => {
                    if done.is_empty() {
                        return Err(e.into());
                    }
                    for k in pending {
                        done.entry(k).or_insert_with(|| Err(Error::Client(e.clone())));
                    }
                    return Ok(done);
                }
                None => {}
            }
            pending.retain(|k| !done.contains_key(k));
            if pending.is_empty() {
                return Ok(done);
            }
            let wait = self.backoff(tries);
            tries = tries.saturating_add(1);
            if expired || Instant::now() + wait >= deadline {
                if done.is_empty() && last.is_empty() {
                    return Err(timeout(&last_whole).into());
                }
                for k in pending {
                    let r = last.remove(&k).unwrap_or_else(|| Err(Error::Client(timeout(&last_whole))));
                    done.insert(k, r);
                }
                return Ok(done);
            }
            // Resources the answer left out are asked again too (a broker that drops one is
            // misbehaving; the deadline bounds it).
            tracing::debug!(call = what, pending = pending.len(), "retrying after finding the brokers again");
            self.client.request_refresh();
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs a call about one thing (the cluster, all groups): retries whole-attempt failures
    /// that may pass until the deadline.
    pub(crate) async fn run_one<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut results = self
            .run(what, vec![()], |_| {
                let fut = attempt();
                async move {
                    match fut.await {
                        Err(Error::Client(e)) => Err(e),
                        r => Ok(vec![((), r)]),
                    }
                }
            })
            .await?;
        results.remove(&()).unwrap_or_else(|| Err(Error::invalid(what, "no result")))
    }

    /// Fresh metadata for the brokers, the controller and `topics`.
    pub(crate) async fn metadata_for<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Arc<Metadata>, kafka_client::Error> {
        self.client.add_topics(topics);
        self.client.refresh_metadata().await
    }

    /// The connection to broker `node_id`, learning about it from fresh metadata if the
    /// client does not know it yet.
    pub(crate) async fn node(&self, node_id: i32) -> std::result::Result<Connection, kafka_client::Error> {
        if !self.client.metadata().brokers.contains_key(&node_id) {
            self.client.refresh_metadata().await?;
        }
        if !self.client.metadata().brokers.contains_key(&node_id) {
            return Err(kafka_client::Error::kafka(
                ErrorCode::BrokerNotAvailable,
                Some(format!("broker {node_id} is not in the metadata")),
            ));
        }
        self.client.connection(node_id).await
    }

    /// The connection to the controller named by fresh metadata (with KRaft, a broker that
    /// forwards to the controller; any broker when the metadata names none).
    pub(crate) async fn controller(&self) -> std::result::Result<Connection, kafka_client::Error> {
        let metadata = self.client.refresh_metadata().await?;
        if metadata.controller_id >= 0 && metadata.brokers.contains_key(&metadata.controller_id) {
            self.client.connection(metadata.controller_id).await
        } else {
            self.client.any_connection().await
        }
    }

    /// The connection to the coordinator of `key` (`key_type` 0 = group, 1 = transaction).
    pub(crate) async fn coordinator(&self, key_type: i8, key: &str, resource: &str) -> Result<Connection> {
        let any = self.client.any_connection().await?;
        let version = any.version(ApiKey::FindCoordinator, 0)?;
        if key_type != 0 && version < 1 {
            return Err(kafka_client::Error::UnsupportedVersion {
                api: ApiKey::FindCoordinator,
                broker: any.address().to_string(),
                detail: "transaction coordinators need FindCoordinator v1".to_owned(),
            }
            .into());
        }
        let request = if version >= 4 {
            FindCoordinatorRequest { key_type, coordinator_keys: vec![key.to_owned()], ..Default::default() }
        } else {
            FindCoordinatorRequest { key: key.to_owned(), key_type, ..Default::default() }
        };
        let response = any.request_at(&request, version).await?;
        let (code, node_id, message) = if version >= 4 {
            match response.coordinators.into_iter().next() {
                Some(c) => (c.error_code, c.node_id, c.error_message),
                None => (ErrorCode::CoordinatorNotAvailable.code(), -1, None),
            }
        } else {
            (response.error_code, response.node_id, response.error_message)
        };
        let code = ErrorCode::from_code(code);
        if code != ErrorCode::None {
            return Err(Error::kafka(resource, code, message));
        }
        Ok(self.node(node_id).await?)
    }
}

/// Turns a per-resource error code and message into a result.
pub(crate) fn check(resource: impl FnOnce() -> String, code: i16, message: Option<String>) -> Result<()> {
    match ErrorCode::from_code(code) {
        ErrorCode::None => Ok(()),
        code => Err(Error::kafka(resource(), code, message)),
    }
}

/// Every key of `keys` that `results` left out gets an error saying so.
pub(crate) fn fill_missing<K: Ord + Clone, T>(
    keys: &[K],
    results: &mut Vec<(K, Result<T>)>,
    name: impl Fn(&K) -> String,
) {
    for k in keys {
        if !results.iter().any(|(r, _)| r == k) {
            results.push((
                k.clone(),
                Err(Error::kafka(
                    name(k),
                    ErrorCode::UnknownServerError,
                    Some("missing from the broker's answer".into()),
                )),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::sync::Mutex;

    use super::*;

    fn admin(timeout_ms: &str) -> AdminClient {
        let config = AdminConfig::new("127.0.0.1:1")
            .set("default.api.timeout.ms", timeout_ms)
            .unwrap()
            .set("retry.backoff.ms", "1")
            .unwrap()
            .set("retry.backoff.max.ms", "5")
            .unwrap();
        AdminClient::new(config).unwrap()
    }

    fn kafka(resource: &str, code: ErrorCode) -> Error {
        Error::kafka(resource, code, None)
    }

    #[tokio::test]
    async fn rediscovery_errors_are_retried_per_resource_and_others_are_final() {
        let admin = admin("5000");
        let asked: Mutex<Vec<Vec<&str>>> = Mutex::new(Vec::new());
        let results = admin
            .run("test", vec!["a", "b", "c"], |keys| {
                let round = {
                    let mut asked = asked.lock().unwrap();
                    asked.push(keys.clone());
                    asked.len()
                };
                async move {
                    let out: Vec<(&str, Result<u32>)> = keys
                        .into_iter()
                        .map(|k| {
                            let r = match (k, round) {
                                ("a", 1) => Err(kafka("a", ErrorCode::NotController)),
                                ("a", 2) => Err(kafka("a", ErrorCode::CoordinatorLoadInProgress)),
                                ("b", _) => Err(kafka("b", ErrorCode::InvalidTopicException)),
                                _ => Ok(round as u32),
                            };
                            (k, r)
                        })
                        .collect();
                    Ok(out)
                }
            })
            .await
            .unwrap();
        assert_eq!(results["a"], Ok(3));
        assert_eq!(results["b"].as_ref().unwrap_err().code(), Some(ErrorCode::InvalidTopicException));
        assert_eq!(results["c"], Ok(1));
        assert_eq!(*asked.lock().unwrap(), vec![vec!["a", "b", "c"], vec!["a"], vec!["a"]]);
    }

    #[tokio::test]
    async fn a_persistent_transport_failure_times_out_naming_the_last_error() {
        let admin = admin("300");
        let started = Instant::now();
        let e = admin
            .run("test call", vec![1], |_| async {
                Err::<Vec<(i32, Result<()>)>, _>(kafka_client::Error::NoBrokers("refused".into()))
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        let text = e.to_string();
        assert!(text.contains("test call (last error: no broker reachable: refused)"), "{text}");
        assert!(text.contains("default.api.timeout.ms"), "{text}");
    }

    #[tokio::test]
    async fn a_failure_that_retrying_cannot_fix_ends_the_call_at_once() {
        let admin = admin("5000");
        let mut attempts = 0;
        let e = admin
            .run("test", vec![1], |_| {
                attempts += 1;
                async {
                    Err::<Vec<(i32, Result<()>)>, _>(kafka_client::Error::UnsupportedVersion {
                        api: ApiKey::DescribeProducers,
                        broker: "b".into(),
                        detail: "none".into(),
                    })
                }
            })
            .await
            .unwrap_err();
        assert_eq!(attempts, 1);
        assert!(matches!(e, Error::Client(kafka_client::Error::UnsupportedVersion { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn resources_still_pending_at_the_deadline_keep_their_last_error() {
        let admin = admin("200");
        let results = admin
            .run("test", vec!["g", "h"], |keys| async move {
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let r =
                            if k == "g" { Err(kafka("group g", ErrorCode::CoordinatorLoadInProgress)) } else { Ok(()) };
                        (k, r)
                    })
                    .collect())
            })
            .await
            .unwrap();
        assert_eq!(results["g"].as_ref().unwrap_err().code(), Some(ErrorCode::CoordinatorLoadInProgress));
        assert_eq!(results["g"].as_ref().unwrap_err().resource(), Some("group g"));
        assert!(results["h"].is_ok());
    }

    #[tokio::test]
    async fn an_attempt_cannot_outlive_the_call() {
        let admin = admin("200");
        let started = Instant::now();
        let e = admin
            .run("stuck", vec![1], |_| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<Vec<(i32, Result<()>)>, kafka_client::Error>(Vec::new())
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("stuck (no answer from 127.0.0.1:1)"), "{e}");
    }
}
