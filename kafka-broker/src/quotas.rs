//! Client byte-rate quotas, measured and enforced as Kafka's `ClientQuotaManager` does: bytes
//! are recorded in one-second sample windows (11 kept), the rate is taken over the span they
//! cover, and a client above its quota is throttled for
//! `(rate - quota) / quota * span`, reported as `throttle_time_ms`. The connection is then
//! muted for that long (KIP-219): the broker reads no further request from it.

use std::collections::{HashMap, VecDeque};

/// Kafka's `quota.window.num`.
const SAMPLES: i64 = 11;
/// Kafka's `quota.window.size.seconds`, in ms.
const WINDOW_MS: i64 = 1000;

/// Which quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum QuotaKind {
    Produce,
    Fetch,
}

/// Quotas by client id, with defaults, and the bytes each client moved recently.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    /// `quota.producer.default` / `quota.consumer.default` (bytes per second).
    pub default_produce: Option<f64>,
    pub default_fetch: Option<f64>,
    /// Per client id (Kafka's `producer_byte_rate` / `consumer_byte_rate` client quotas).
    pub per_client: HashMap<String, (Option<f64>, Option<f64>)>,
    pub samples: HashMap<(String, QuotaKind), VecDeque<(i64, f64)>>,
}

impl Quotas {
    fn quota(&self, client: &str, kind: QuotaKind) -> Option<f64> {
        let own = self.per_client.get(client).and_then(|(p, f)| match kind {
            QuotaKind::Produce => *p,
            QuotaKind::Fetch => *f,
        });
        own.or(match kind {
            QuotaKind::Produce => self.default_produce,
            QuotaKind::Fetch => self.default_fetch,
        })
        .filter(|q| *q > 0.0)
    }

    /// Whether any quota applies to the client (cheap check before measuring sizes).
    pub fn applies(&self, client: &str, kind: QuotaKind) -> bool {
        self.quota(client, kind).is_some()
    }

    /// Records `bytes` for the client and returns how long it must be throttled (ms).
    pub fn record(&mut self, client: &str, kind: QuotaKind, bytes: usize, now_ms: i64) -> i32 {
        let Some(quota) = self.quota(client, kind) else { return 0 };
        let window = now_ms.div_euclid(WINDOW_MS);
        let samples = self.samples.entry((client.to_string(), kind)).or_default();
        match samples.back_mut() {
            Some((w, total)) if *w == window => *total += bytes as f64,
            _ => samples.push_back((window, bytes as f64)),
        }
        while samples.front().is_some_and(|(w, _)| *w <= window - SAMPLES) {
            samples.pop_front();
        }
        let total: f64 = samples.iter().map(|(_, b)| b).sum();
        // The span measured: from the oldest window's start to now, but at least
        // (samples - 1) whole windows, as Kafka's Rate does, so a first burst is not divided by
        // a few milliseconds.
        let oldest = samples.front().map_or(window, |(w, _)| *w) * WINDOW_MS;
        let span_ms = (now_ms - oldest).max((SAMPLES - 1) * WINDOW_MS) as f64;
        let rate = total / (span_ms / 1000.0);
        if rate <= quota {
            return 0;
        }
        let throttle = (rate - quota) / quota * span_ms;
        throttle.min((SAMPLES * WINDOW_MS) as f64) as i32
    }

    /// Takes back bytes recorded for a response that was not sent (a throttled fetch).
    pub fn unrecord(&mut self, client: &str, kind: QuotaKind, bytes: usize, now_ms: i64) {
        let window = now_ms.div_euclid(WINDOW_MS);
        if let Some(samples) = self.samples.get_mut(&(client.to_string(), kind)) {
            if let Some((w, total)) = samples.back_mut() {
                if *w == window {
                    *total = (*total - bytes as f64).max(0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_quota_is_not_throttled_and_over_quota_is_in_proportion() {
        let mut q = Quotas { default_produce: Some(1000.0), ..Default::default() };
        // 5,000 bytes over a 10 s span is 500 B/s: fine.
        assert_eq!(q.record("a", QuotaKind::Produce, 5_000, 100_000), 0);
        // Another 15,000: 2,000 B/s against 1,000: throttled (2000-1000)/1000 * 10 s = 10 s.
        assert_eq!(q.record("a", QuotaKind::Produce, 15_000, 100_000), 10_000);
        // Fetch has no quota; another client is measured on its own.
        assert_eq!(q.record("a", QuotaKind::Fetch, 1 << 30, 100_000), 0);
        assert_eq!(q.record("b", QuotaKind::Produce, 100, 100_000), 0);
        // Old windows fall out after 11 s.
        assert_eq!(q.record("a", QuotaKind::Produce, 1, 112_000), 0);
    }

    #[test]
    fn per_client_quota_beats_the_default() {
        let mut q = Quotas { default_produce: Some(1.0), ..Default::default() };
        q.per_client.insert("big".into(), (Some(1e9), None));
        assert_eq!(q.record("big", QuotaKind::Produce, 1_000_000, 0), 0);
        assert!(q.record("small", QuotaKind::Produce, 1_000_000, 0) > 0);
    }
}
