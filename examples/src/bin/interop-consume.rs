//! A consumer process for the interop tests: joins a group next to other clients (librdkafka
//! in `tests/interop/consumer_interop.py`), writes every record it receives to a file as
//! `partition offset value` lines, commits after each poll batch, and logs every assignment
//! change to stderr, so that a test can check how the group shared the partitions.
//!
//! ```text
//! interop-consume --bootstrap-server 127.0.0.1:9092 --topic t --group g [--strategy range] --out out.txt \
//!     [--max-idle-ms 5000] [--consumer-property K=V ...]
//! ```
//!
//! `--strategy` sets `partition.assignment.strategy` (classic groups); leave it out with
//! `--consumer-property group.protocol=consumer`, where the broker assigns.
//!
//! It exits cleanly (commit, close: revocation and LeaveGroup) after `--max-idle-ms` without
//! a record (default 5000), or on SIGTERM / SIGINT.
//!
//! The client's own log goes to stderr too, at `RUST_LOG` (default `warn`).
//!
//! Assignment changes are stderr lines `INTEROP <event> <unix time in s> <partitions>`, where
//! event is `assigned`, `revoked` or `lost` and partitions is a comma-separated list of
//! partition numbers (`-` when empty); `INTEROP exit <time> <records>` ends a clean run.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_client::consumer::{BoxFuture, RebalanceListener, TopicPartition};
use kafka_client::{Consumer, ConsumerConfig};

const USAGE: &str = "usage: interop-consume --bootstrap-server HOST:PORT --topic T --group G \
[--strategy range|cooperative-sticky|...] --out FILE [--max-idle-ms MS] [--consumer-property K=V ...]";

struct Args {
    bootstrap: String,
    topic: String,
    group: String,
    strategy: Option<String>,
    out: String,
    max_idle: Duration,
    properties: Vec<(String, String)>,
}

fn parse() -> Result<Args, String> {
    let mut bootstrap = None;
    let mut topic = None;
    let mut group = None;
    let mut strategy = None;
    let mut out = None;
    let mut max_idle = Duration::from_millis(5000);
    let mut properties = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap-server" => bootstrap = Some(value),
            "--topic" => topic = Some(value),
            "--group" => group = Some(value),
            "--strategy" => strategy = Some(value),
            "--out" => out = Some(value),
            "--max-idle-ms" => {
                max_idle = Duration::from_millis(value.parse().map_err(|_| "--max-idle-ms: expected a number")?)
            }
            "--consumer-property" => {
                let (k, v) = value.split_once('=').ok_or("--consumer-property: expected KEY=VALUE")?;
                properties.push((k.to_owned(), v.to_owned()));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        bootstrap: bootstrap.ok_or("--bootstrap-server is required")?,
        topic: topic.ok_or("--topic is required")?,
        group: group.ok_or("--group is required")?,
        strategy,
        out: out.ok_or("--out is required")?,
        max_idle,
        properties,
    })
}

/// Seconds since the Unix epoch, with microseconds (comparable across processes).
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn log_change(event: &str, partitions: &[TopicPartition]) {
    let list: Vec<String> = partitions.iter().map(|tp| tp.partition.to_string()).collect();
    let list = if list.is_empty() { "-".to_owned() } else { list.join(",") };
    eprintln!("INTEROP {event} {:.6} {list}", now());
}

/// Logs every assignment change (nothing to commit on revocation: each batch is committed
/// before the next poll, which is where revocations run).
struct LogChanges;

impl RebalanceListener for LogChanges {
    fn on_partitions_revoked<'a>(&'a self, _: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        log_change("revoked", partitions);
        Box::pin(async {})
    }

    fn on_partitions_assigned<'a>(&'a self, _: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        log_change("assigned", partitions);
        Box::pin(async {})
    }

    fn on_partitions_lost<'a>(&'a self, _: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        log_change("lost", partitions);
        Box::pin(async {})
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("interop-consume: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-consume: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(filter).try_init();
    let mut config = ConsumerConfig::new(&args.bootstrap)
        .set("group.id", &args.group)?
        .set("auto.offset.reset", "earliest")?
        .set("enable.auto.commit", "false")?;
    if let Some(strategy) = &args.strategy {
        config = config.set("partition.assignment.strategy", strategy)?;
    }
    for (k, v) in &args.properties {
        config = config.set(k, v)?;
    }
    let consumer = Consumer::with_listener(config, LogChanges)?;
    consumer.subscribe([args.topic.as_str()])?;

    // SIGTERM / SIGINT only raise a flag: the loop notices it between polls, so a poll (and
    // the rebalance callbacks it runs) is never cancelled halfway.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.store(true, Ordering::Release);
        });
    }

    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    let mut received = 0u64;
    let mut last_record = Instant::now();
    let why = loop {
        if stop.load(Ordering::Acquire) {
            break "signal";
        }
        if last_record.elapsed() >= args.max_idle {
            break "idle";
        }
        let batch = match consumer.poll(Duration::from_millis(200)).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("interop-consume: poll: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        last_record = Instant::now();
        for r in &batch {
            let value = String::from_utf8_lossy(r.value().unwrap_or_default());
            writeln!(out, "{} {} {}", r.partition(), r.offset(), value)?;
        }
        received += batch.len() as u64;
        out.flush()?;
        // A failed commit (the group rebalanced since the batch was handed out) means its
        // records may be read again by the partition's next owner: the duplicates the test
        // allows around rebalances.
        if let Err(e) = consumer.commit().await {
            eprintln!("interop-consume: commit: {e}");
        }
    };
    out.flush()?;
    eprintln!("interop-consume: stopping ({why}) after {received} records");
    consumer.close().await?;
    eprintln!("INTEROP exit {:.6} {received}", now());
    Ok(())
}
