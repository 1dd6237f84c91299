//! The connection layer shared by the producer, the consumer and the admin client:
//! bootstrap, one connection per broker with reconnect backoff, and the metadata cache.
//!
//! - Connections are opened on demand, one per broker, and shared by every caller. A failed
//!   attempt makes the next one wait `reconnect.backoff.ms`, doubling per failure up to
//!   `reconnect.backoff.max.ms`, with ±20% jitter so that many clients do not reconnect in
//!   step.
//! - Metadata is an immutable [`Metadata`] snapshot behind a `watch` channel: readers take
//!   the current snapshot, waiters wake when a new one is published. A background task
//!   refreshes it every `metadata.max.age.ms` and soon after anyone asks for a refresh (after
//!   an error), no more often than `retry.backoff.ms`.
//! - A refresh asks an already connected broker first, then the other known brokers, then the
//!   bootstrap servers (resolved again each time): when every known broker is gone, the client
//!   re-bootstraps.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::{ApiKey, ErrorCode};
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{parse_host_port, ClientConfig};
use crate::conn::{self, BrokerAddress, Connection};
use crate::error::{Error, Result};
use crate::metadata::Metadata;

/// The lowest Metadata version used: v1 distinguishes "no topics" (empty list) from "all
/// topics" (null), which the client relies on.
const METADATA_MIN_VERSION: i16 = 1;

/// A handle to the connection layer. Cheap to clone; the background metadata task stops when
/// the last handle is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("bootstrap", &self.inner.config.bootstrap_servers).finish()
    }
}

struct Inner {
    config: ClientConfig,
    allow_auto_topic_creation: bool,
    nodes: Mutex<HashMap<i32, Arc<NodeSlot>>>,
    metadata: watch::Sender<Arc<Metadata>>,
    interest: Mutex<BTreeSet<String>>,
    /// Every refresh asks for all topics (pattern subscriptions).
    all_topics: AtomicBool,
    refresh_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    refresh_wanted: Arc<Notify>,
    closed: AtomicBool,
    /// Why the last metadata refresh failed (cleared by the next success), so that waits
    /// on metadata report the cause (a wrong password, say) rather than a bare timeout.
    last_refresh_error: Mutex<Option<Error>>,
    /// Shared with the metadata task, which holds only a weak reference to the rest.
    shutdown: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

struct NodeSlot {
    address: Mutex<BrokerAddress>,
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    conn: Option<Connection>,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Client {
    /// A client for the cluster behind `config.bootstrap_servers`. Nothing is connected yet;
    /// the first request or metadata refresh connects. `allow_auto_topic_creation` is sent
    /// with metadata requests (the producer's default is true, as in Java).
    pub fn new(config: ClientConfig, allow_auto_topic_creation: bool) -> Result<Client> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidArgument("a Client must be created inside a tokio runtime".to_owned()));
        }
        let (metadata, _) = watch::channel(Arc::new(Metadata::default()));
        let mut nodes = HashMap::new();
        for (i, server) in config.bootstrap_servers.iter().enumerate() {
            let (host, port) =
                parse_host_port(server).map_err(|r| crate::config::config_error("bootstrap.servers", &r))?;
            let node_id = -1 - i as i32;
            nodes.insert(node_id, Arc::new(NodeSlot::new(BrokerAddress { node_id, host, port })));
        }
        let inner = Arc::new(Inner {
            config,
            allow_auto_topic_creation,
            nodes: Mutex::new(nodes),
            metadata,
            interest: Mutex::new(BTreeSet::new()),
            all_topics: AtomicBool::new(false),
            refresh_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            refresh_wanted: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            last_refresh_error: Mutex::new(None),
            shutdown: Arc::new(Notify::new()),
        });
        tokio::spawn(metadata_task(Arc::downgrade(&inner), inner.shutdown.clone(), inner.refresh_wanted.clone()));
        Ok(Client { inner })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current metadata snapshot (possibly empty before the first refresh).
    pub fn metadata(&self) -> Arc<Metadata> {
        self.inner.metadata.borrow().clone()
    }

    /// A receiver that sees every new metadata snapshot.
    pub fn watch_metadata(&self) -> watch::Receiver<Arc<Metadata>> {
        self.inner.metadata.subscribe()
    }

    /// Adds topics to those every refresh asks about. Returns whether any was new.
    pub fn add_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        let mut interest = lock(&self.inner.interest);
        let mut added = false;
        for t in topics {
            if !interest.contains(t) {
                interest.insert(t.to_owned());
                added = true;
            }
        }
        added
    }

    /// Makes every refresh ask for all topics (for pattern subscriptions); topics missing
    /// from such an answer are dropped from the snapshot (they were deleted).
    pub fn add_all_topics(&self) {
        self.inner.all_topics.store(true, Ordering::Release);
    }

    /// Asks the background task for a refresh soon (after an error that suggests the
    /// metadata is stale). Does not wait.
    pub fn request_refresh(&self) {
        self.inner.refresh_wanted.notify_one();
    }

    /// Refreshes metadata now for the topics of interest and returns the new snapshot.
    /// Concurrent callers share one request.
    pub async fn refresh_metadata(&self) -> Result<Arc<Metadata>> {
        refresh(&self.inner).await
    }

    /// The error of the last metadata refresh when it is one that retrying cannot fix (see
    /// [`Error::is_fatal_connection`]): failed authentication or TLS, an unsupported SASL
    /// mechanism. `None` once a refresh succeeds. Waits on metadata (the producer's `send`,
    /// the consumer's `poll`) return it instead of waiting out their timeout, as the Java
    /// client throws its `AuthenticationException`.
    pub fn fatal_error(&self) -> Option<Error> {
        lock(&self.inner.last_refresh_error).clone().filter(Error::is_fatal_connection)
    }

    /// Waits until the metadata knows `topic` with its partitions (asking for it), at most
    /// `timeout`. Topic errors that retrying cannot fix are returned at once, and so are
    /// connection errors that retrying cannot fix ([`Client::fatal_error`]); a timeout names
    /// the last error seen.
    pub async fn wait_for_topic(&self, topic: &str, timeout: Duration, setting: &'static str) -> Result<Arc<Metadata>> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.watch_metadata();
        if self.add_topics([topic]) {
            self.request_refresh();
        }
        let mut last_error = None;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if let Some(t) = snapshot.topic(topic) {
                match t.error.err() {
                    None if !t.partitions.is_empty() => return Ok(snapshot),
                    None => {}
                    Some(code) if code.is_retriable() || code == kafka_protocol::ErrorCode::UnknownTopicOrPartition => {
                        last_error = Some(code)
                    }
                    Some(code) => return Err(Error::kafka(code, Some(format!("topic {topic}")))),
                }
            }
            if let Some(e) = self.fatal_error() {
                return Err(e);
            }
            self.request_refresh();
            // A failed refresh publishes no snapshot: look at its error at least every
            // retry.backoff.max.ms.
            let poll_error = Instant::now() + self.inner.config.retry_backoff_max.max(Duration::from_millis(100));
            match tokio::time::timeout_at(deadline.min(poll_error), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed("client")),
                Err(_) if Instant::now() < deadline => {}
                Err(_) => {
                    let last = match (last_error, lock(&self.inner.last_refresh_error).as_ref()) {
                        (_, Some(e)) => format!(" (last error: {e})"),
                        (Some(c), None) => format!(" (last error {})", c.name()),
                        (None, None) => String::new(),
                    };
                    return Err(Error::Timeout {
                        what: format!("waiting for topic {topic} in the metadata{last}"),
                        setting,
                        timeout_ms: timeout.as_millis() as u64,
                    });
                }
            }
        }
    }

    /// The connection to broker `node_id`, opened if needed (waiting out the reconnect
    /// backoff of earlier failures).
    pub async fn connection(&self, node_id: i32) -> Result<Connection> {
        let slot = self.slot(node_id)?;
        connect_slot(&self.inner, &slot).await
    }

    /// An open connection to any broker, for requests any broker can answer.
    pub async fn any_connection(&self) -> Result<Connection> {
        any_connection(&self.inner).await
    }

    /// Finds the coordinator of `key` (FindCoordinator, asked of any broker; `key_type` 0 for
    /// a consumer group, 1 for a transactional id) and opens a connection of its own to it,
    /// which the caller keeps until the coordinator moves.
    ///
    /// Errors are the broker's (`COORDINATOR_NOT_AVAILABLE` while the coordinator is being
    /// elected, for example) or the transport's; the caller decides whether to retry.
    pub async fn coordinator_connection(&self, key: &str, key_type: i8) -> Result<Connection> {
        let any = self.any_connection().await?;
        let version = any.version(ApiKey::FindCoordinator, 0)?;
        if key_type != 0 && version < 1 {
            return Err(Error::UnsupportedVersion {
                api: ApiKey::FindCoordinator,
                broker: any.address().to_string(),
                detail: "transaction coordinators need FindCoordinator v1".to_owned(),
            });
        }
        let request = if version >= 4 {
            FindCoordinatorRequest { key_type, coordinator_keys: vec![key.to_owned()], ..Default::default() }
        } else {
            FindCoordinatorRequest { key: key.to_owned(), key_type, ..Default::default() }
        };
        let response = any.request_at(&request, version).await?;
        let (code, node_id, host, port, message) = if version >= 4 {
            match response.coordinators.into_iter().next() {
                Some(c) => (ErrorCode::from_code(c.error_code), c.node_id, c.host, c.port, c.error_message),
                None => (ErrorCode::CoordinatorNotAvailable, -1, String::new(), 0, None),
            }
        } else {
            (
                ErrorCode::from_code(response.error_code),
                response.node_id,
                response.host,
                response.port,
                response.error_message,
            )
        };
        if code != ErrorCode::None {
            return Err(Error::kafka(code, message));
        }
        let port = u16::try_from(port)
            .map_err(|_| Error::kafka(ErrorCode::CoordinatorNotAvailable, Some(format!("bad port {port}"))))?;
        let address = BrokerAddress { node_id, host, port };
        let c = conn::connect(&address, &self.inner.config).await?;
        tracing::debug!(key, key_type, coordinator = %address, "coordinator found");
        Ok(c)
    }

    /// Stops the background task and closes every connection.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shutdown.notify_one();
        let slots: Vec<Arc<NodeSlot>> = lock(&self.inner.nodes).values().cloned().collect();
        for slot in slots {
            if let Ok(state) = slot.state.try_lock() {
                if let Some(c) = &state.conn {
                    c.close();
                }
            }
        }
    }

    /// Whether [`Client::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn slot(&self, node_id: i32) -> Result<Arc<NodeSlot>> {
        if let Some(s) = lock(&self.inner.nodes).get(&node_id) {
            return Ok(s.clone());
        }
        Err(Error::InvalidArgument(format!("broker {node_id} is not in the metadata")))
    }
}

impl NodeSlot {
    fn new(address: BrokerAddress) -> Self {
        NodeSlot { address: Mutex::new(address), state: tokio::sync::Mutex::new(SlotState::default()) }
    }
}

/// Locks a std mutex, taking the data of a poisoned one (the client's critical sections leave
/// their data consistent at every step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The wait before the next attempt after `failures` failures in a row.
fn backoff(config: &ClientConfig, failures: u32) -> Duration {
    let base = config.reconnect_backoff.as_secs_f64();
    let max = config.reconnect_backoff_max.as_secs_f64().max(base);
    let exp = base * 2f64.powi(failures.saturating_sub(1).min(30) as i32);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::from_secs_f64((exp.min(max) * jitter).max(0.0))
}

async fn connect_slot(inner: &Inner, slot: &NodeSlot) -> Result<Connection> {
    if inner.closed.load(Ordering::Acquire) {
        return Err(Error::Closed("client"));
    }
    let mut state = slot.state.lock().await;
    if let Some(c) = &state.conn {
        if !c.is_closed() {
            return Ok(c.clone());
        }
        state.conn = None;
    }
    if let Some(at) = state.next_attempt {
        tokio::time::sleep_until(at).await;
    }
    let address = lock(&slot.address).clone();
    match conn::connect(&address, &inner.config).await {
        Ok(c) => {
            state.failures = 0;
            state.next_attempt = None;
            state.conn = Some(c.clone());
            Ok(c)
        }
        Err(e) => {
            state.failures = state.failures.saturating_add(1);
            state.next_attempt = Some(Instant::now() + backoff(&inner.config, state.failures));
            tracing::debug!(broker = %address, error = %e, failures = state.failures, "connect failed");
            Err(e)
        }
    }
}

async fn any_connection(inner: &Inner) -> Result<Connection> {
    let slots: Vec<Arc<NodeSlot>> = lock(&inner.nodes).values().cloned().collect();
    // An open connection to a known broker first.
    for slot in &slots {
        if lock(&slot.address).node_id < 0 {
            continue;
        }
        if let Ok(state) = slot.state.try_lock() {
            if let Some(c) = state.conn.as_ref().filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
    }
    // Then known brokers in random order, then the bootstrap servers.
    let (mut known, mut bootstrap): (Vec<Arc<NodeSlot>>, Vec<Arc<NodeSlot>>) =
        slots.into_iter().partition(|s| lock(&s.address).node_id >= 0);
    known.shuffle(&mut rand::thread_rng());
    bootstrap.shuffle(&mut rand::thread_rng());
    let mut errors = Vec::new();
    let mut security_error = None;
    for slot in known.iter().chain(bootstrap.iter()) {
        match connect_slot(inner, slot).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                errors.push(e.to_string());
                // A SASL failure says what to fix and will not go away by retrying: report it
                // as itself rather than inside "no broker reachable". (TLS errors stay inside:
                // a broker restarting mid-handshake also fails it.)
                if security_error.is_none()
                    && matches!(e, Error::Authentication { .. } | Error::SaslMechanismNotEnabled { .. })
                {
                    security_error = Some(e);
                }
            }
        }
    }
    Err(security_error.unwrap_or_else(|| Error::NoBrokers(errors.join("; "))))
}

async fn refresh(inner: &Inner) -> Result<Arc<Metadata>> {
    let result = refresh_once(inner).await;
    *lock(&inner.last_refresh_error) = result.as_ref().err().cloned();
    result
}

async fn refresh_once(inner: &Inner) -> Result<Arc<Metadata>> {
    let before = inner.generation.load(Ordering::Acquire);
    let _guard = inner.refresh_lock.lock().await;
    if inner.generation.load(Ordering::Acquire) != before {
        // Someone else refreshed while we waited for the lock: share their answer.
        return Ok(inner.metadata.borrow().clone());
    }
    let topics: Vec<String> = lock(&inner.interest).iter().cloned().collect();
    let conn = any_connection(inner).await?;
    let version = conn.version(ApiKey::Metadata, METADATA_MIN_VERSION)?;
    let all = inner.all_topics.load(Ordering::Acquire);
    let request = MetadataRequest {
        topics: if all {
            None
        } else {
            Some(topics.iter().map(|t| MetadataRequestTopic { name: Some(t.clone()), ..Default::default() }).collect())
        },
        allow_auto_topic_creation: inner.allow_auto_topic_creation && !all,
        ..Default::default()
    };
    let response: MetadataResponse = conn.request_at(&request, version).await?;
    let mut merged = inner.metadata.borrow().merge(&response);
    if all {
        let present: BTreeSet<&str> = response.topics.iter().filter_map(|t| t.name.as_deref()).collect();
        merged.topics.retain(|name, _| present.contains(name.as_str()));
    }
    let snapshot = Arc::new(merged);
    update_nodes(inner, &snapshot);
    inner.metadata.send_replace(snapshot.clone());
    inner.generation.fetch_add(1, Ordering::AcqRel);
    Ok(snapshot)
}

/// Adds slots for new brokers and re-points slots whose broker moved.
fn update_nodes(inner: &Inner, metadata: &Metadata) {
    let mut nodes = lock(&inner.nodes);
    for b in metadata.brokers.values() {
        let address = BrokerAddress { node_id: b.node_id, host: b.host.clone(), port: b.port };
        match nodes.get(&b.node_id) {
            Some(slot) => {
                let mut current = lock(&slot.address);
                if *current != address {
                    *current = address;
                    if let Ok(mut state) = slot.state.try_lock() {
                        if let Some(c) = state.conn.take() {
                            c.close();
                        }
                    }
                }
            }
            None => {
                nodes.insert(b.node_id, Arc::new(NodeSlot::new(address)));
            }
        }
    }
}

async fn metadata_task(inner: Weak<Inner>, shutdown: Arc<Notify>, refresh_wanted: Arc<Notify>) {
    let mut last_refresh: Option<Instant> = None;
    let mut next_periodic: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let (max_age, retry_backoff, retry_backoff_max) = {
            let Some(strong) = inner.upgrade() else { return };
            if strong.closed.load(Ordering::Acquire) {
                return;
            }
            (strong.config.metadata_max_age, strong.config.retry_backoff, strong.config.retry_backoff_max)
        };
        let periodic = *next_periodic.get_or_insert_with(|| Instant::now() + max_age);
        // Wait holding no strong reference, so that dropping the last Client ends the task.
        let wanted = {
            tokio::select! {
                _ = refresh_wanted.notified() => true,
                _ = shutdown.notified() => return,
                _ = tokio::time::sleep_until(periodic) => true,
            }
        };
        if !wanted {
            continue;
        }
        if let Some(at) = last_refresh {
            let since = at.elapsed();
            let min_gap =
                if failures > 0 { backoff_for(retry_backoff, retry_backoff_max, failures) } else { retry_backoff };
            if since < min_gap {
                tokio::select! {
                    _ = tokio::time::sleep(min_gap - since) => {}
                    _ = shutdown.notified() => return,
                }
            }
        }
        let Some(strong) = inner.upgrade() else { return };
        last_refresh = Some(Instant::now());
        next_periodic = Some(Instant::now() + max_age);
        match refresh(&strong).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, "metadata refresh failed");
                // Try again after the backoff.
                strong.refresh_wanted.notify_one();
            }
        }
    }
}

fn backoff_for(retry_backoff: Duration, cap: Duration, failures: u32) -> Duration {
    let base = retry_backoff.as_secs_f64();
    let max = cap.as_secs_f64().max(base);
    Duration::from_secs_f64((base * 2f64.powi(failures.min(30) as i32 - 1)).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_with_jitter_up_to_the_maximum() {
        let config = ClientConfig {
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            ..Default::default()
        };
        let ms = |failures| backoff(&config, failures).as_millis();
        for _ in 0..100 {
            assert!((40..=60).contains(&ms(1)));
            assert!((80..=120).contains(&ms(2)));
            assert!((160..=240).contains(&ms(3)));
            assert!((800..=1200).contains(&ms(10)));
            assert!((800..=1200).contains(&ms(1000)));
        }
        // Jitter: not every wait is the same.
        let samples: std::collections::HashSet<u128> = (0..50).map(|_| ms(4)).collect();
        assert!(samples.len() > 5);
    }

    #[test]
    fn metadata_retry_backoff_grows_to_its_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        assert_eq!(backoff_for(base, cap, 1), Duration::from_millis(100));
        assert_eq!(backoff_for(base, cap, 2), Duration::from_millis(200));
        assert_eq!(backoff_for(base, cap, 20), cap);
    }
}
