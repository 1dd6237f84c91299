//! `rdkafka-perf`: the librdkafka side of the producer and consumer comparisons. Same command
//! line and the same `RESULT ...` line as `kafka-perf` (examples/src/bin/kafka-perf.rs), with
//! `client=librdkafka`, so `perf/compare.sh` can alternate the two against one broker.
//!
//! ```text
//! rdkafka-perf produce --bootstrap-server localhost:9092 --topic perf --num-records 2000000 \
//!     --record-size 100 --partitions 6 --acks all --linger-ms 5 --batch-size 1048576
//! rdkafka-perf consume --bootstrap-server localhost:9092 --topic perf --num-records 2000000
//! ```
//!
//! `consume` is a `BaseConsumer` in a group (a fresh unique one unless `--group` is given)
//! with `auto.offset.reset=earliest`, `check.crcs=true` and the other knobs set to kafka-sdk's
//! defaults (see [`librdkafka_consumer_config`]); it polls one message at a time, sums the
//! payload lengths, and measures from the first message to the N-th, as kafka-perf does.
//!
//! Workload parity with `kafka-perf`:
//! - payloads: the same rule and seed (StdRng seed 42, a pool of 1024 payloads, each half
//!   random bytes and half a repeated JSON-like text), no key;
//! - the topic is created with P partitions (replication factor: broker default) when missing;
//! - the Java-named settings are translated to librdkafka's (see [`librdkafka_config`]), and
//!   every knob that differs between the two clients' defaults is set explicitly;
//! - only acknowledged records count; latency is send (accepted into the queue) to delivery
//!   report; CPU is user + system time of the whole process from /proc/self/stat, peak RSS is
//!   VmHWM, both exactly as `kafka-perf` reads them.
//!
//! Delivery reports are served from the producing thread (a `BaseProducer` polled without
//! waiting every 64 sends, and while waiting for queue space), which measured 20-40% faster
//! on a 2-core machine than rdkafka's `ThreadedProducer` (an extra thread polling); set
//! `RDKAFKA_PERF_POLL=thread` for the latter.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};

const USAGE: &str = "\
rdkafka-perf: librdkafka producer throughput, latency, CPU and memory (same CLI as kafka-perf).

USAGE:
    rdkafka-perf produce --bootstrap-server HOST:PORT --topic T --num-records N --record-size BYTES [options]
    rdkafka-perf consume --bootstrap-server HOST:PORT --topic T --num-records N [consume options]

PRODUCE OPTIONS:
    --partitions P              partitions when the topic is created (default 6)
    --acks all|1|0              (default all)
    --linger-ms MS              (default 5)
    --batch-size BYTES          (default 1048576)
    --compression CODEC         none, gzip, snappy, lz4 or zstd (default none)
    --idempotence true|false    (default true)
    --transactional-id ID       send in transactions (workload TXN); RESULT adds transactions_per_s
    --transaction-records N     records per transaction, each committed (default 100)
    --producer-property K=V     a producer setting by its Java name (translated to librdkafka's
                                where the names differ) or any librdkafka property (repeatable)

CONSUME OPTIONS:
    --group G                   group id (default: a fresh unique one, so everything is read)
    --isolation-level L         read_uncommitted (default) or read_committed
    --timeout-ms MS             give up after this long without a message (default 60000)
    --consumer-property K=V     a consumer setting by its Java name (translated where the names
                                differ) or any librdkafka property (repeatable)

    -h, --help                  this text
";

struct Args {
    bootstrap: String,
    topic: String,
    records: u64,
    record_size: usize,
    partitions: i32,
    properties: Vec<(String, String)>,
    /// Records per transaction (a transactional id is set).
    transaction_records: Option<u64>,
}

struct ConsumeArgs {
    bootstrap: String,
    topic: String,
    records: u64,
    idle_timeout: Duration,
    /// Consumer settings (Java or librdkafka names), in order (later ones win).
    properties: Vec<(String, String)>,
}

enum Mode {
    Produce(Args),
    Consume(ConsumeArgs),
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Mode>, String> {
    match it.next().as_deref() {
        Some("produce") => parse_produce(it).map(|a| a.map(Mode::Produce)),
        Some("consume") => parse_consume(it).map(|a| a.map(Mode::Consume)),
        Some("-h") | Some("--help") | None => Ok(None),
        Some(other) => Err(format!("unknown mode `{other}` (produce or consume)")),
    }
}

fn parse_consume(mut it: impl Iterator<Item = String>) -> Result<Option<ConsumeArgs>, String> {
    let mut bootstrap = None;
    let mut topic = None;
    let mut records = None;
    let mut idle_timeout = Duration::from_secs(60);
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut properties = vec![("group.id".to_owned(), format!("rdkafka-perf-{}-{unique}", std::process::id()))];
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bootstrap-server" => bootstrap = Some(value()?),
            "--topic" => topic = Some(value()?),
            "--num-records" => records = Some(value()?.parse().map_err(|_| "--num-records: expected a number")?),
            "--group" => properties.push(("group.id".into(), value()?)),
            "--isolation-level" => properties.push(("isolation.level".into(), value()?)),
            "--timeout-ms" => {
                idle_timeout = Duration::from_millis(value()?.parse().map_err(|_| "--timeout-ms: expected a number")?)
            }
            "--consumer-property" => {
                let kv = value()?;
                let (k, v) =
                    kv.split_once('=').ok_or_else(|| format!("--consumer-property {kv}: expected KEY=VALUE"))?;
                properties.push((k.to_owned(), v.to_owned()));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Some(ConsumeArgs {
        bootstrap: bootstrap.ok_or("--bootstrap-server is required")?,
        topic: topic.ok_or("--topic is required")?,
        records: records.ok_or("--num-records is required")?,
        idle_timeout,
        properties,
    }))
}

fn parse_produce(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut bootstrap = None;
    let mut topic = None;
    let mut records = None;
    let mut record_size = None;
    let mut partitions = 6;
    // The same defaults as kafka-perf, by their Java names.
    let mut transaction_records = None;
    let mut properties = vec![
        ("acks".to_owned(), "all".to_owned()),
        ("linger.ms".to_owned(), "5".to_owned()),
        ("batch.size".to_owned(), "1048576".to_owned()),
        ("enable.idempotence".to_owned(), "true".to_owned()),
    ];
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bootstrap-server" => bootstrap = Some(value()?),
            "--topic" => topic = Some(value()?),
            "--num-records" => records = Some(value()?.parse().map_err(|_| "--num-records: expected a number")?),
            "--record-size" => record_size = Some(value()?.parse().map_err(|_| "--record-size: expected a number")?),
            "--partitions" => partitions = value()?.parse().map_err(|_| "--partitions: expected a number")?,
            "--acks" => properties.push(("acks".into(), value()?)),
            "--linger-ms" => properties.push(("linger.ms".into(), value()?)),
            "--batch-size" => properties.push(("batch.size".into(), value()?)),
            "--compression" => properties.push(("compression.type".into(), value()?)),
            "--idempotence" => properties.push(("enable.idempotence".into(), value()?)),
            "--transactional-id" => {
                properties.push(("transactional.id".into(), value()?));
                transaction_records.get_or_insert(100);
            }
            "--transaction-records" => {
                let n: u64 = value()?.parse().map_err(|_| "--transaction-records: expected a number")?;
                if n == 0 {
                    return Err("--transaction-records must be at least 1".to_owned());
                }
                transaction_records = Some(n);
            }
            "--producer-property" => {
                let kv = value()?;
                let (k, v) =
                    kv.split_once('=').ok_or_else(|| format!("--producer-property {kv}: expected KEY=VALUE"))?;
                properties.push((k.to_owned(), v.to_owned()));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let bootstrap = bootstrap.ok_or("--bootstrap-server is required")?;
    let topic = topic.ok_or("--topic is required")?;
    let records: u64 = records.ok_or("--num-records is required")?;
    if records >= u32::MAX as u64 {
        // A record's index travels in the upper 32 bits of its delivery opaque.
        return Err("--num-records: at most 4294967294".into());
    }
    Ok(Some(Args {
        bootstrap,
        topic,
        records,
        record_size: record_size.ok_or("--record-size is required")?,
        partitions,
        transaction_records: transaction_records
            .filter(|_| properties.iter().any(|(k, v)| k == "transactional.id" && !v.is_empty())),
        properties,
    }))
}

/// The librdkafka configuration for `args`: parity knobs first (set explicitly, because
/// librdkafka's defaults differ from the Java/kafka-sdk ones), then the user's settings
/// translated from Java names, later ones winning.
///
/// Parity knobs and why:
/// - `max.in.flight.requests.per.connection=5` (librdkafka: 1000000, lowered to 5 only by
///   idempotence), `socket.nagle.disable=true` (we set TCP_NODELAY);
/// - `batch.num.messages=1000000` (its maximum; default 10000) so that `batch.size` bounds a
///   batch, as in the Java client;
/// - `message.max.bytes=1048576` (Java `max.request.size`; librdkafka default 1000000, which
///   would cap a 1 MiB batch just below `batch.size`);
/// - `queue.buffering.max.kbytes=32768`: the Java `buffer.memory` of 32 MiB. librdkafka counts
///   payload + key bytes of queued and in-flight messages; ours counts encoded batch bytes
///   (payload plus a few bytes of record framing), so librdkafka may hold slightly more
///   records, never fewer: it is not made to wait earlier than ours;
///   `queue.buffering.max.messages=0` (no count limit; default 100000 would bind first for
///   records under 335 bytes);
/// - `partitioner=murmur2_random` (Java-compatible for keys; keyless records use the sticky
///   partitioner), `sticky.partitioning.linger.ms=max(2 x linger.ms, 10)`: librdkafka switches
///   the sticky partition on time, ours (KIP-794) after `batch.size` bytes; at these rates 10 ms
///   is about one full 1 MiB batch per partition, and never shorter than linger so a batch is
///   not split across partitions before linger closes it;
/// - `message.timeout.ms=120000` (Java `delivery.timeout.ms`; librdkafka 300000),
///   `request.timeout.ms=30000`, `retry.backoff.ms=100`, `retry.backoff.max.ms=1000`.
fn librdkafka_config(args: &Args) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "rdkafka-perf")
        .set("max.in.flight.requests.per.connection", "5")
        .set("socket.nagle.disable", "true")
        .set("batch.num.messages", "1000000")
        .set("message.max.bytes", "1048576")
        .set("queue.buffering.max.kbytes", "32768")
        .set("queue.buffering.max.messages", "0")
        .set("partitioner", "murmur2_random")
        .set("compression.codec", "none")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "30000")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "1000");
    let mut sticky_set = false;
    let mut linger_ms = 5.0f64;
    for (k, v) in &args.properties {
        let (key, value): (&str, String) = match k.as_str() {
            "compression.type" => ("compression.codec", v.clone()),
            "compression.gzip.level" | "compression.lz4.level" | "compression.zstd.level" => {
                ("compression.level", v.clone())
            }
            "max.request.size" => ("message.max.bytes", v.clone()),
            "delivery.timeout.ms" => ("message.timeout.ms", v.clone()),
            "buffer.memory" => {
                let bytes: u64 = v.parse().map_err(|_| format!("buffer.memory: expected a number, got `{v}`"))?;
                ("queue.buffering.max.kbytes", bytes.div_ceil(1024).max(1).to_string())
            }
            "max.block.ms" => {
                eprintln!("rdkafka-perf: max.block.ms has no librdkafka equivalent (this tool waits for queue space); ignored");
                continue;
            }
            other => (other, v.clone()),
        };
        match key {
            "linger.ms" | "queue.buffering.max.ms" => {
                linger_ms = value.parse().map_err(|_| format!("{k}: expected a number, got `{value}`"))?;
            }
            "sticky.partitioning.linger.ms" => sticky_set = true,
            _ => {}
        }
        c.set(key, value);
    }
    // rdkafka derives librdkafka's log level from the `log` crate's (off here, as nothing
    // installs a logger); Ctx::log prints to stderr instead.
    c.set_log_level(if c.get("debug").is_some() { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Warning });
    if !sticky_set {
        c.set("sticky.partitioning.linger.ms", ((2.0 * linger_ms).ceil() as u64).max(10).to_string());
    }
    Ok(c)
}

/// Per-record bookkeeping shared with the delivery-report callback.
struct Ctx {
    start: Instant,
    /// Microseconds from send to delivery report per record; `u32::MAX` until delivered.
    latencies_us: Vec<AtomicU32>,
    /// Records whose delivery report arrived (successful or not).
    completed: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The outcome of the warm-up record.
    warm_up: Mutex<Option<Result<(), String>>>,
}

/// The delivery opaque of the warm-up record.
const WARM_UP: usize = usize::MAX;

impl ClientContext for Ctx {
    /// librdkafka's log lines (warnings and errors, or everything named by `debug=...`) on
    /// stderr, stamped with the time since start.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("[{:10.6}] {level:?} {fac}: {message}", self.start.elapsed().as_secs_f64());
    }
}

impl ProducerContext for Ctx {
    /// `(index << 32) | send time in microseconds since start`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if opaque == WARM_UP {
            let outcome = match result {
                Ok(_) => Ok(()),
                Err((e, _)) => Err(e.to_string()),
            };
            if let Ok(mut w) = self.warm_up.lock() {
                *w = Some(outcome);
            }
            return;
        }
        // Both stamps modulo 2^32 µs (71 minutes), so the difference wraps correctly.
        let now_us = self.start.elapsed().as_micros() as u32;
        let opaque = opaque as u64;
        let index = (opaque >> 32) as usize;
        let sent_us = opaque as u32;
        match result {
            Ok(_) => {
                let latency = now_us.wrapping_sub(sent_us).min(u32::MAX - 1);
                if let Some(slot) = self.latencies_us.get(index) {
                    slot.store(latency, Ordering::Relaxed);
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        self.completed.fetch_add(1, Ordering::Release);
    }
}

/// `count` distinct payloads of `size` bytes: half random bytes, half a repeated JSON-like
/// text, from a fixed seed: the rule of examples/src/perf.rs, copied (this crate does not
/// depend on the workspace).
fn payloads(size: usize, count: usize) -> Vec<Vec<u8>> {
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

/// The compressed size of the concatenated payloads with `codec` at its default level (as
/// kafka-perf prints it): (input bytes, output bytes). Informational only.
fn compression_ratio(payloads: &[Vec<u8>], codec: &str) -> (usize, usize) {
    let input: Vec<u8> = payloads.concat();
    let out = match codec {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&input).and_then(|_| e.finish()).map(|v| v.len()).ok()
        }
        "snappy" => input
            .chunks(32 * 1024)
            .map(|b| snap::raw::Encoder::new().compress_vec(b).map(|v| v.len() + 4))
            .sum::<Result<usize, _>>()
            .ok()
            .map(|n| n + 16),
        "lz4" => Some(
            input.chunks(64 * 1024).map(|b| lz4_flex::block::compress(b).len().min(b.len()) + 4).sum::<usize>() + 11,
        ),
        "zstd" => zstd::bulk::compress(&input, 3).map(|v| v.len()).ok(),
        _ => None,
    };
    (input.len(), out.unwrap_or(input.len()))
}

/// The value at quantile `q` (0..=1) of sorted samples, as f64 (0 when empty).
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().map(f64::from).unwrap_or(0.0)
}

/// User + system CPU seconds of this process (from /proc/self/stat; 0 where unavailable).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime; USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The process's peak resident set in MB (VmHWM from /proc/self/status; 0 where unavailable).
fn peak_rss_mb() -> f64 {
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

/// Creates `topic` with `partitions` partitions (replication factor: the broker default) unless
/// it exists, through librdkafka's admin client.
fn create_topic(config: &ClientConfig, topic: &str, partitions: i32) -> Result<(), Box<dyn std::error::Error>> {
    let mut admin_config = ClientConfig::new();
    for key in ["bootstrap.servers", "socket.nagle.disable"] {
        if let Some(v) = config.get(key) {
            admin_config.set(key, v);
        }
    }
    let admin: AdminClient<DefaultClientContext> = admin_config.create()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime.block_on(admin.create_topics([&new_topic], &options))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating {name}: {code}").into()),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rdkafka-perf: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match args {
        Mode::Produce(a) => run(a),
        Mode::Consume(a) => consume(a),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rdkafka-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The producer, with delivery reports served either by rdkafka's polling thread or from the
/// producing thread.
enum Prod {
    Threaded(ThreadedProducer<Ctx>),
    Inline(BaseProducer<Ctx>),
}

impl Prod {
    #[allow(clippy::result_large_err)]
    fn send<'a>(
        &self,
        record: BaseRecord<'a, (), [u8], usize>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, (), [u8], usize>)> {
        match self {
            Prod::Threaded(p) => p.send(record),
            Prod::Inline(p) => p.send(record),
        }
    }

    /// Lets delivery reports free queue space for about `d`.
    fn wait(&self, d: Duration) {
        match self {
            Prod::Threaded(_) => std::thread::sleep(d),
            Prod::Inline(p) => p.poll(d),
        }
    }

    /// Serves at most one pending delivery-report event (one batch's reports) without waiting
    /// (inline mode only).
    fn poll_now(&self) {
        if let Prod::Inline(p) = self {
            p.poll(Duration::ZERO);
        }
    }

    fn native_ptr(&self) -> *mut rdkafka::types::RDKafka {
        match self {
            Prod::Threaded(p) => p.client().native_ptr(),
            Prod::Inline(p) => p.client().native_ptr(),
        }
    }

    /// Sends everything queued now (ignoring linger, like kafka-perf's flush) and returns once
    /// `done()` holds, serving delivery reports meanwhile.
    ///
    /// Not rdkafka's `flush()`: with the event API it calls `rd_kafka_flush(rk, 0)` and then
    /// polls for up to 100 ms at a time, so it returns up to 100 ms after the last report, which
    /// is 5% of a P100 run. Here `rd_kafka_flush` with a real timeout runs on a helper thread:
    /// in event mode it only raises the flushing flag (batches go out without waiting for
    /// linger) and waits on a condition variable until no message is left, while this thread
    /// serves the reports, 1 ms at a time.
    fn flush_until(&self, done: impl Fn() -> bool) -> Result<(), String> {
        let rk = self.native_ptr() as usize;
        std::thread::scope(|scope| {
            let flusher = scope.spawn(move || {
                // SAFETY: rd_kafka_flush is thread-safe and `rk` stays valid: the producer
                // outlives this scope.
                unsafe { rdkafka::bindings::rd_kafka_flush(rk as *mut rdkafka::types::RDKafka, 300_000) }
            });
            while !done() {
                self.wait(Duration::from_millis(1));
            }
            match flusher.join() {
                Ok(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR) => Ok(()),
                Ok(e) => Err(format!("flush: {}", RDKafkaErrorCode::from(e))),
                Err(_) => Err("flush thread panicked".to_owned()),
            }
        })
    }

    fn init_transactions(&self) -> Result<(), String> {
        let r = match self {
            Prod::Threaded(p) => p.init_transactions(Duration::from_secs(60)),
            Prod::Inline(p) => p.init_transactions(Duration::from_secs(60)),
        };
        r.map_err(|e| format!("init_transactions: {e}"))
    }

    fn begin_transaction(&self) -> Result<(), String> {
        let r = match self {
            Prod::Threaded(p) => p.begin_transaction(),
            Prod::Inline(p) => p.begin_transaction(),
        };
        r.map_err(|e| format!("begin_transaction: {e}"))
    }

    /// `rd_kafka_commit_transaction` (which flushes first) on a helper thread while this
    /// thread serves delivery reports, as in [`Prod::flush_until`]: with the event API a
    /// commit on the serving thread would wait for reports nobody serves.
    fn commit_transaction(&self) -> Result<(), String> {
        let rk = self.native_ptr() as usize;
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let committer = scope.spawn(|| {
                // SAFETY: rd_kafka_commit_transaction is thread-safe and `rk` stays valid: the
                // producer outlives this scope.
                let e = unsafe {
                    rdkafka::bindings::rd_kafka_commit_transaction(rk as *mut rdkafka::types::RDKafka, 60_000)
                };
                done.store(true, Ordering::Release);
                e as usize
            });
            while !done.load(Ordering::Acquire) {
                self.wait(Duration::from_millis(1));
            }
            match committer.join() {
                Ok(0) => Ok(()),
                Ok(e) => {
                    let e = e as *mut rdkafka::bindings::rd_kafka_error_t;
                    // SAFETY: a non-null error from librdkafka, read then destroyed once.
                    let message = unsafe {
                        let m = std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_error_string(e))
                            .to_string_lossy()
                            .into_owned();
                        rdkafka::bindings::rd_kafka_error_destroy(e);
                        m
                    };
                    Err(format!("commit_transaction: {message}"))
                }
                Err(_) => Err("commit thread panicked".to_owned()),
            }
        })
    }

    fn context(&self) -> std::sync::Arc<Ctx> {
        match self {
            Prod::Threaded(p) => p.context().clone(),
            Prod::Inline(p) => p.context().clone(),
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = librdkafka_config(&args)?;
    create_topic(&config, &args.topic, args.partitions)?;
    let pool = payloads(args.record_size, 1024);
    let codec = config.get("compression.codec").unwrap_or("none").to_owned();
    let (ratio_in, ratio_out) = compression_ratio(&pool, &codec);

    let start = Instant::now();
    let ctx = Ctx {
        start,
        latencies_us: (0..args.records).map(|_| AtomicU32::new(u32::MAX)).collect(),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        warm_up: Mutex::new(None),
    };
    let inline = std::env::var("RDKAFKA_PERF_POLL").map(|v| v != "thread").unwrap_or(true);
    let producer = if inline {
        Prod::Inline(config.create_with_context(ctx)?)
    } else {
        Prod::Threaded(config.create_with_context(ctx)?)
    };
    let context = producer.context();

    // Warm-up, outside the clock: one record, awaited. librdkafka 2.12's idempotent producer
    // acquires its producer id on a 500 ms FSM timer once the first broker connection is up
    // (after the bootstrap connection is replaced by the real broker's), so without this every
    // run would carry ~0.5 s of start-up in its throughput. kafka-perf has no such pause (its
    // start-up, a few ms, stays inside its clock), so this favours librdkafka slightly.
    let transactional = args.transaction_records.is_some();
    if transactional {
        producer.init_transactions()?;
        producer.begin_transaction()?;
    }
    let warm_up = BaseRecord::<'_, (), [u8], usize>::with_opaque_to(&args.topic, WARM_UP).payload(pool[0].as_slice());
    producer.send(warm_up).map_err(|(e, _)| format!("warm-up send: {e}"))?;
    producer.flush_until(|| context.warm_up.lock().map(|w| w.is_some()).unwrap_or(true))?;
    if transactional {
        producer.commit_transaction()?;
    }
    if let Some(Err(e)) = context.warm_up.lock().ok().and_then(|w| w.clone()) {
        return Err(format!("warm-up record failed: {e}").into());
    }

    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    let mut queue_full_waits = 0u64;
    let mut transactions = 0u64;
    for i in 0..args.records {
        if let Some(n) = args.transaction_records {
            if i % n == 0 {
                if i > 0 {
                    producer.commit_transaction()?;
                    transactions += 1;
                }
                producer.begin_transaction()?;
            }
        }
        let value = &pool[(i % pool.len() as u64) as usize];
        let stamp = |i: u64| ((i << 32) | (context.start.elapsed().as_micros() as u64 & 0xffff_ffff)) as usize;
        let mut record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(&args.topic, stamp(i)).payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    queue_full_waits += 1;
                    record = back;
                    producer.wait(Duration::from_millis(1));
                    // Latency counts from the moment the record is accepted, as in kafka-perf.
                    record.delivery_opaque = stamp(i);
                }
                Err((e, _)) => return Err(format!("send: {e}").into()),
            }
        }
        if inline && i % 64 == 63 {
            producer.poll_now();
        }
    }
    if transactional && args.records > 0 {
        producer.commit_transaction()?;
        transactions += 1;
    }
    // Every record gets a report (success, or failure within message.timeout.ms).
    producer.flush_until(|| context.completed.load(Ordering::Acquire) >= args.records)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_start;
    drop(producer);

    let failed = context.failed.load(Ordering::Relaxed);
    let mut latencies: Vec<u32> =
        context.latencies_us.iter().map(|l| l.load(Ordering::Relaxed)).filter(|&l| l != u32::MAX).collect();
    let acked = latencies.len() as u64;
    let missing = args.records - acked - failed;
    if failed > 0 {
        let first = context.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
        eprintln!("rdkafka-perf: {failed} records failed; first error: {first}");
    }
    if missing > 0 {
        eprintln!("rdkafka-perf: {missing} records got no delivery report");
    }
    if std::env::var_os("RDKAFKA_PERF_DEBUG").is_some() {
        eprintln!("rdkafka-perf: {queue_full_waits} waits for queue space");
    }
    latencies.sort_unstable();
    let bytes = acked * args.record_size as u64;
    println!(
        "{acked} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms p50, {:.2} ms p99; compression ratio {:.2}; librdkafka {}",
        acked as f64 / secs,
        bytes as f64 / secs / 1e6,
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        ratio_in as f64 / ratio_out.max(1) as f64,
        rdkafka::util::get_rdkafka_version().1,
    );
    let txn_figures = if transactional {
        format!(" transactions={transactions} transactions_per_s={:.1}", transactions as f64 / secs)
    } else {
        String::new()
    };
    println!(
        "RESULT client=librdkafka mode=produce records={acked} bytes={bytes} secs={secs:.3} records_per_s={:.0} mb_per_s={:.2} cpu_s={cpu:.3} cpu_ns_per_record={:.0} p50_ms={:.3} p99_ms={:.3} peak_rss_mb={:.1}{txn_figures}",
        acked as f64 / secs,
        bytes as f64 / secs / 1e6,
        cpu * 1e9 / acked.max(1) as f64,
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        peak_rss_mb(),
    );
    if failed + missing > 0 {
        return Err(format!("{} records were not delivered", failed + missing).into());
    }
    Ok(())
}

/// The librdkafka consumer configuration: kafka-sdk's consumer defaults set explicitly where
/// librdkafka's differ or might, then the user's settings translated from Java names.
///
/// Parity knobs and why:
/// - `auto.offset.reset=earliest`, `check.crcs=true` (librdkafka: false; we check CRCs by
///   default), `enable.auto.commit=true` with `auto.commit.interval.ms=5000` (both clients'
///   defaults), `isolation.level=read_uncommitted` (librdkafka defaults to read_committed; ours
///   and Java's to read_uncommitted);
/// - fetch sizes: `fetch.wait.max.ms=500`, `fetch.min.bytes=1`, `fetch.max.bytes=52428800`,
///   `max.partition.fetch.bytes=1048576` (Java/kafka-sdk defaults; librdkafka's are the same
///   today but are set so a version change shows), `queued.max.messages.kbytes=65536` (the
///   prefetch bound, 64 MiB in both);
/// - `session.timeout.ms=45000`, `heartbeat.interval.ms=3000`,
///   `partition.assignment.strategy=range` (kafka-perf uses range too; one member gets all);
/// - `socket.nagle.disable=true` (we set TCP_NODELAY), `enable.partition.eof=false`;
/// - `fetch.queue.backoff.ms=10` (librdkafka: 1000): once a partition's local queue holds
///   `queued.min.messages` (100,000) messages, librdkafka stops fetching it for this long.
///   Ours fetches a partition again as soon as the application has drained its buffer. With
///   the default, librdkafka sat idle for much of C100 (0.4-0.85M records/s); 0, 1, 10 and
///   100 ms all gave 1.5-1.75M records/s on a 2-core machine. Override with
///   `--consumer-property fetch.queue.backoff.ms=1000` to see the default.
fn librdkafka_consumer_config(args: &ConsumeArgs) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "rdkafka-perf")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "5000")
        .set("isolation.level", "read_uncommitted")
        .set("fetch.wait.max.ms", "500")
        .set("fetch.min.bytes", "1")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "1048576")
        .set("queued.max.messages.kbytes", "65536")
        .set("session.timeout.ms", "45000")
        .set("heartbeat.interval.ms", "3000")
        .set("partition.assignment.strategy", "range")
        .set("socket.nagle.disable", "true")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in &args.properties {
        let key = match k.as_str() {
            "fetch.max.wait.ms" => "fetch.wait.max.ms",
            "max.poll.records" | "default.api.timeout.ms" => {
                eprintln!("rdkafka-perf: {k} has no librdkafka equivalent; ignored");
                continue;
            }
            other => other,
        };
        c.set(key, v);
    }
    c.set_log_level(if c.get("debug").is_some() { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Warning });
    Ok(c)
}

/// The consumer's context: librdkafka's log lines on stderr, default rebalancing.
struct ConsumeCtx {
    start: Instant,
}

impl ClientContext for ConsumeCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        eprintln!("[{:10.6}] {level:?} {fac}: {message}", self.start.elapsed().as_secs_f64());
    }
}

impl ConsumerContext for ConsumeCtx {}

/// The consumer side: reads `--num-records` messages with `poll` and prints one `RESULT` line.
fn consume(args: ConsumeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = librdkafka_consumer_config(&args)?;
    let group = config.get("group.id").unwrap_or_default().to_owned();
    let cpu_begin = process_cpu_seconds();
    let begin = Instant::now();
    let consumer: BaseConsumer<ConsumeCtx> = config.create_with_context(ConsumeCtx { start: begin })?;
    consumer.subscribe(&[args.topic.as_str()])?;

    let mut count = 0u64;
    let mut bytes = 0u64;
    // Set at the first message: the measured interval runs from there to the N-th.
    let mut first: Option<(Instant, f64, u64)> = None;
    let mut last_record = Instant::now();
    while count < args.records {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_record.elapsed() > args.idle_timeout {
                    return Err(format!(
                        "only {count} of {} records after {} ms without a message",
                        args.records,
                        args.idle_timeout.as_millis()
                    )
                    .into());
                }
            }
            Some(Err(e)) => return Err(format!("poll: {e}").into()),
            Some(Ok(m)) => {
                count += 1;
                bytes += m.payload().map_or(0, |v| v.len() as u64);
                if first.is_none() {
                    last_record = Instant::now();
                    first = Some((last_record, process_cpu_seconds(), count));
                } else if count % 4096 == 0 {
                    last_record = Instant::now();
                }
            }
        }
    }
    let end = Instant::now();
    let cpu_end = process_cpu_seconds();
    let (first_at, first_cpu, first_count) = first.unwrap_or((end, cpu_end, count));
    let secs = end.duration_since(first_at).as_secs_f64();
    let measured = count - first_count;
    let cpu = cpu_end - first_cpu;
    let total_secs = end.duration_since(begin).as_secs_f64();
    let total_cpu = cpu_end - cpu_begin;
    // Leaves the group (the final auto-commit, LeaveGroup), as kafka-perf's close does.
    drop(consumer);
    let rate = measured as f64 / secs.max(1e-9);
    let mb_per_s = rate * (bytes as f64 / count.max(1) as f64) / 1e6;
    println!(
        "{count} records ({bytes} value bytes) consumed by group {group}, {rate:.1} records/sec ({mb_per_s:.2} MB/sec) from the first record; {total_secs:.3} s including the group join; librdkafka {}",
        rdkafka::util::get_rdkafka_version().1,
    );
    println!(
        "RESULT client=librdkafka mode=consume records={count} bytes={bytes} secs={secs:.3} records_per_s={rate:.0} mb_per_s={mb_per_s:.2} cpu_s={cpu:.3} cpu_ns_per_record={:.0} cpu_us_per_record={:.3} total_secs={total_secs:.3} total_cpu_s={total_cpu:.3} peak_rss_mb={:.1}",
        cpu * 1e9 / measured.max(1) as f64,
        cpu * 1e6 / measured.max(1) as f64,
        peak_rss_mb(),
    );
    Ok(())
}
