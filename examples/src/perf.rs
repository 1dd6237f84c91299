//! What `kafka-perf` needs besides the producer: topic creation, payloads, and process
//! figures read from /proc.

use kafka_client::{Client, ClientConfig, Compression};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::ErrorCode;
use rand::{Rng, SeedableRng};

/// Creates `topic` with `partitions` partitions (replication factor: the broker default) unless
/// it exists. The request goes to the controller, as Kafka requires of older clusters.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::new(ClientConfig::new(bootstrap), false)?;
    let metadata = client.refresh_metadata().await?;
    let conn = if metadata.controller_id >= 0 {
        client.connection(metadata.controller_id).await?
    } else {
        client.any_connection().await?
    };
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.to_owned(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        }],
        timeout_ms: 30_000,
        validate_only: false,
        ..Default::default()
    };
    let response = conn.request(&request).await?;
    client.close();
    for t in response.topics {
        match ErrorCode::from_code(t.error_code) {
            ErrorCode::None | ErrorCode::TopicAlreadyExists => {}
            code => {
                return Err(format!("creating {topic}: {} {}", code.name(), t.error_message.unwrap_or_default()).into())
            }
        }
    }
    Ok(())
}

/// `count` distinct payloads of `size` bytes: half random bytes, half a repeated JSON-like
/// text (PERFORMANCE.md), from a fixed seed so runs compare.
pub fn payloads(size: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let text = br#"{"user":"alice","action":"click","page":"/home","ok":true},"#;
    (0..count)
        .map(|_| {
            let mut v: Vec<u8> = (0..size / 2).map(|_| rng.gen()).collect();
            v.extend(text.iter().cycle().take(size - size / 2));
            v
        })
        .collect()
}

/// The compressed size of the payloads with `codec`: (input bytes, output bytes).
pub fn compression_ratio(payloads: &[Vec<u8>], codec: Compression) -> (usize, usize) {
    let input: Vec<u8> = payloads.concat();
    let mut out = bytes::BytesMut::new();
    match kafka_protocol::compression::compress(codec, None, &input, &mut out) {
        Ok(()) if codec != Compression::None => (input.len(), out.len()),
        _ => (input.len(), input.len()),
    }
}

/// The value at quantile `q` (0..=1) of sorted samples, as f64 (0 when empty).
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().map(f64::from).unwrap_or(0.0)
}

/// User + system CPU seconds of this process (from /proc/self/stat; 0 where unavailable).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name (field 2) may contain spaces; fields after its closing parenthesis.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // Linux has reported USER_HZ = 100 to user space on every architecture for decades.
    100.0
}

/// The process's peak resident set in MB (VmHWM from /proc/self/status; 0 where unavailable).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_distinct_and_sized() {
        let p = payloads(100, 16);
        assert!(p.iter().all(|v| v.len() == 100));
        assert_ne!(p[0], p[1]);
        let (i, o) = compression_ratio(&p, Compression::Lz4);
        assert!(o < i, "half the payload is repetitive text, so lz4 shrinks it");
    }

    #[test]
    fn figures_from_proc() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_cpu_seconds() > 0.0);
        assert!(peak_rss_mb() > 1.0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 0.5), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
