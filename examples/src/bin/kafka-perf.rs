//! `kafka-perf`: producer and consumer throughput, latency, CPU and memory, shaped like
//! Kafka's `kafka-producer-perf-test` and `kafka-consumer-perf-test`. It ends with one
//! `RESULT ...` line that scripts can read.
//!
//! ```text
//! kafka-perf produce --bootstrap-server localhost:9092 --topic perf --num-records 2000000 \
//!     --record-size 100 --partitions 6 --acks all --linger-ms 5 --batch-size 1048576
//! kafka-perf consume --bootstrap-server localhost:9092 --topic perf --num-records 2000000
//! ```
//!
//! `consume` joins a group (a fresh unique one unless `--group` is given) that starts from the
//! earliest offset, with `check.crcs=true`, and reads with `poll` until N records arrived,
//! summing the value lengths (so every record is touched). Its rate is measured from the
//! first record received to the N-th; the total including the group join is printed too.
//!
//! Payloads are not constant: half random bytes, half a repeated JSON-like text (so codecs see
//! realistic ratios), drawn from a pool of 1024 distinct payloads. Only acknowledged records
//! count. CPU is the process's user + system time (from /proc), so it includes this tool's own
//! small loop; the librdkafka companion measures the same way.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kafka_client::{Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use kafka_examples::perf::{create_topic, payloads, peak_rss_mb, percentile, process_cpu_seconds};
use kafka_examples::progress::Progress;

const USAGE: &str = "\
kafka-perf: producer throughput, latency, CPU and memory against any Kafka cluster.

USAGE:
    kafka-perf produce --bootstrap-server HOST:PORT --topic T --num-records N --record-size BYTES [options]
    kafka-perf consume --bootstrap-server HOST:PORT --topic T --num-records N [consume options]

PRODUCE OPTIONS:
    --partitions P              partitions when the topic is created (default 6)
    --acks all|1|0              (default all)
    --linger-ms MS              (default 5)
    --batch-size BYTES          (default 1048576)
    --compression CODEC         none, gzip, snappy, lz4 or zstd (default none)
    --idempotence true|false    (default true)
    --producer-property K=V     any producer setting by its Java name (repeatable)
    --transactional-id ID       send in transactions (workload TXN); RESULT adds transactions_per_s
    --transaction-records N     records per transaction, each committed (default 100)

CONSUME OPTIONS:
    --group G                   group id (default: a fresh unique one, so everything is read)
    --isolation-level L         read_uncommitted (default) or read_committed
    --timeout-ms MS             give up after this long without a record (default 60000)
    --consumer-property K=V     any consumer setting by its Java name (repeatable); defaults:
                                auto.offset.reset=earliest, check.crcs=true,
                                enable.auto.commit=true, partition.assignment.strategy=range
                                (not with group.protocol=consumer, where the broker assigns)

    --progress / --no-progress  draw a progress bar on stderr (default: only when stderr is
                                a terminal); stdout keeps only the summary and RESULT lines
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
    progress: bool,
}

struct ConsumeArgs {
    bootstrap: String,
    topic: String,
    records: u64,
    /// Give up after this long without a record.
    idle_timeout: Duration,
    /// Consumer settings by Java name, in order (later ones win).
    properties: Vec<(String, String)>,
    progress: bool,
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
    let mut progress = kafka_examples::progress::Progress::stderr_is_terminal();
    let mut properties = vec![
        ("group.id".to_owned(), format!("kafka-perf-{}-{unique}", std::process::id())),
        ("auto.offset.reset".to_owned(), "earliest".to_owned()),
        ("check.crcs".to_owned(), "true".to_owned()),
        ("enable.auto.commit".to_owned(), "true".to_owned()),
        ("partition.assignment.strategy".to_owned(), "range".to_owned()),
    ];
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--progress" => progress = true,
            "--no-progress" => progress = false,
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
    if properties.iter().any(|(k, v)| k == "group.protocol" && v.trim().eq_ignore_ascii_case("consumer")) {
        // With KIP-848 the broker assigns: the classic default does not apply (and the consumer
        // refuses it). The first entry is the default; one given on the command line stays.
        if let Some(i) = properties.iter().position(|(k, _)| k == "partition.assignment.strategy") {
            properties.remove(i);
        }
    }
    Ok(Some(ConsumeArgs {
        bootstrap: bootstrap.ok_or("--bootstrap-server is required")?,
        topic: topic.ok_or("--topic is required")?,
        records: records.ok_or("--num-records is required")?,
        idle_timeout,
        properties,
        progress,
    }))
}

fn parse_produce(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut bootstrap = None;
    let mut topic = None;
    let mut records = None;
    let mut record_size = None;
    let mut partitions = 6;
    let mut transaction_records = None;
    let mut progress = kafka_examples::progress::Progress::stderr_is_terminal();
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
            "--progress" => progress = true,
            "--no-progress" => progress = false,
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
    Ok(Some(Args {
        bootstrap: bootstrap.ok_or("--bootstrap-server is required")?,
        topic: topic.ok_or("--topic is required")?,
        records: records.ok_or("--num-records is required")?,
        record_size: record_size.ok_or("--record-size is required")?,
        partitions,
        transaction_records: transaction_records
            .filter(|_| properties.iter().any(|(k, v)| k == "transactional.id" && !v.is_empty())),
        properties,
        progress,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kafka-perf: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match args {
        Mode::Produce(a) => run(a).await,
        Mode::Consume(a) => consume(a).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ProducerConfig::new(&args.bootstrap);
    for (k, v) in &args.properties {
        config = config.set(k, v)?;
    }
    create_topic(&args.bootstrap, &args.topic, args.partitions).await?;
    let pool = payloads(args.record_size, 1024);
    let (ratio_in, ratio_out) = kafka_examples::perf::compression_ratio(&pool, config.compression);
    let producer = Producer::new(config)?;

    // A second task awaits the delivery futures in chunks (one hop per 1024 records) and
    // records each record's latency from send to acknowledgement.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(Instant, DeliveryFuture)>>();
    let collector = tokio::spawn(async move {
        let mut latencies_us: Vec<u32> = Vec::new();
        let mut acked = 0u64;
        let mut failed = 0u64;
        let mut first_error = None;
        // Reading the clock costs as much as a quarter of a record's budget on some VMs: read
        // it again only after a wait (records completed together share one reading).
        let mut now = Instant::now();
        while let Some(chunk) = rx.recv().await {
            for (at, f) in chunk {
                let waited = !f.is_done();
                let outcome = f.await;
                if waited {
                    now = Instant::now();
                }
                match outcome {
                    Ok(_) => {
                        acked += 1;
                        latencies_us.push(now.saturating_duration_since(at).as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        (acked, failed, first_error, latencies_us)
    });

    if args.transaction_records.is_some() {
        producer.init_transactions().await?;
    }
    let mut transactions = 0u64;
    let progress = Progress::start(args.records, "records", args.progress);
    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    let mut chunk = Vec::new();
    let mut sent_at = start;
    for i in 0..args.records {
        if let Some(n) = args.transaction_records {
            if i % n == 0 {
                if i > 0 {
                    producer.commit_transaction().await?;
                    transactions += 1;
                }
                producer.begin_transaction()?;
            }
        }
        let value = pool.get((i % pool.len() as u64) as usize).map(Vec::as_slice).unwrap_or_default();
        let f = producer.send(ProducerRecord::new(&args.topic).value(value)).await?;
        // One clock reading per 16 records (a few microseconds apart at most).
        if i % 16 == 0 {
            sent_at = Instant::now();
        }
        chunk.push((sent_at, f));
        if i % 100_000 == 0 && std::env::var_os("KAFKA_PERF_DEBUG").is_some() {
            eprintln!("{i}: buffer available {}", producer.buffer_available_bytes());
        }
        if chunk.len() == 1024 {
            let _ = tx.send(std::mem::take(&mut chunk));
            progress.add(1024);
        }
    }
    let _ = tx.send(chunk);
    drop(tx);
    if args.transaction_records.is_some() && args.records > 0 {
        producer.commit_transaction().await?;
        transactions += 1;
    }
    producer.flush().await?;
    let (acked, failed, first_error, mut latencies) = collector.await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_start;
    progress.finish().await;
    producer.close(Duration::from_secs(30)).await?;
    if let Some(e) = first_error {
        eprintln!("kafka-perf: {failed} records failed; first error: {e}");
    }
    latencies.sort_unstable();
    let bytes = acked * args.record_size as u64;
    println!(
        "{acked} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms p50, {:.2} ms p99; compression ratio {:.2}",
        acked as f64 / secs,
        bytes as f64 / secs / 1e6,
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        ratio_in as f64 / ratio_out.max(1) as f64,
    );
    let txn_figures = if args.transaction_records.is_some() {
        format!(" transactions={transactions} transactions_per_s={:.1}", transactions as f64 / secs)
    } else {
        String::new()
    };
    println!(
        "RESULT client=kafka-sdk mode=produce records={acked} bytes={bytes} secs={secs:.3} records_per_s={:.0} mb_per_s={:.2} cpu_s={cpu:.3} cpu_ns_per_record={:.0} p50_ms={:.3} p99_ms={:.3} peak_rss_mb={:.1}{txn_figures}",
        acked as f64 / secs,
        bytes as f64 / secs / 1e6,
        cpu * 1e9 / acked.max(1) as f64,
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        peak_rss_mb(),
    );
    if failed > 0 {
        return Err(format!("{failed} records were not delivered").into());
    }
    Ok(())
}

/// The consumer side: reads `--num-records` records with `poll` and prints one `RESULT` line.
async fn consume(args: ConsumeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ConsumerConfig::new(&args.bootstrap);
    for (k, v) in &args.properties {
        config = config.set(k, v)?;
    }
    let group = config.group_id.clone().unwrap_or_default();
    let cpu_begin = process_cpu_seconds();
    let begin = Instant::now();
    let consumer = Consumer::new(config)?;
    consumer.subscribe([args.topic.as_str()])?;

    let mut count = 0u64;
    let mut bytes = 0u64;
    // Set when the first records arrive: the measured interval runs from there to the N-th
    // record, and the records of that first poll are not counted in the rate.
    let mut first: Option<(Instant, f64, u64)> = None;
    let mut last_record = Instant::now();
    let progress = Progress::start(args.records, "records", args.progress);
    while count < args.records {
        let batch = consumer.poll(Duration::from_millis(100)).await?;
        if batch.is_empty() {
            if last_record.elapsed() > args.idle_timeout {
                progress.finish().await;
                consumer.close().await?;
                return Err(format!(
                    "only {count} of {} records after {} ms without a record",
                    args.records,
                    args.idle_timeout.as_millis()
                )
                .into());
            }
            continue;
        }
        last_record = Instant::now();
        count += batch.len() as u64;
        progress.add(batch.len() as u64);
        for r in &batch {
            bytes += r.value().map_or(0, |v| v.len() as u64);
        }
        if first.is_none() {
            first = Some((last_record, process_cpu_seconds(), count));
        }
    }
    let end = Instant::now();
    let cpu_end = process_cpu_seconds();
    progress.finish().await;
    let (first_at, first_cpu, first_count) = first.unwrap_or((end, cpu_end, count));
    let secs = end.duration_since(first_at).as_secs_f64();
    let measured = count - first_count;
    let cpu = cpu_end - first_cpu;
    let total_secs = end.duration_since(begin).as_secs_f64();
    let total_cpu = cpu_end - cpu_begin;
    consumer.close().await?;
    let rate = measured as f64 / secs.max(1e-9);
    let mb_per_s = rate * (bytes as f64 / count.max(1) as f64) / 1e6;
    println!(
        "{count} records ({bytes} value bytes) consumed by group {group}, {rate:.1} records/sec ({mb_per_s:.2} MB/sec) from the first record; {:.3} s including the group join",
        total_secs
    );
    println!(
        "RESULT client=kafka-sdk mode=consume records={count} bytes={bytes} secs={secs:.3} records_per_s={rate:.0} mb_per_s={mb_per_s:.2} cpu_s={cpu:.3} cpu_ns_per_record={:.0} cpu_us_per_record={:.3} total_secs={total_secs:.3} total_cpu_s={total_cpu:.3} peak_rss_mb={:.1}",
        cpu * 1e9 / measured.max(1) as f64,
        cpu * 1e6 / measured.max(1) as f64,
        peak_rss_mb(),
    );
    Ok(())
}
