//! A fixture producer for the interop tests: for each codec it produces `--records` records
//! with known keys, values, headers and timestamps to topic `<prefix>-<codec>` (created with
//! 2 partitions), so that another client (librdkafka in `tests/interop/producer_interop.py`)
//! can check it reads exactly what was written.
//!
//! Record `i`: key `key-{i % 50}`, value `{"n": i, "text": "abc" * (i % 20)}`, headers
//! `trace` = i as 8 big-endian bytes and `empty` = null, timestamp `--base-timestamp` + i
//! (recent by default: brokers delete records older than the retention time).
//!
//! ```text
//! interop-produce --bootstrap-server 127.0.0.1:9092 --topic-prefix interop --records 1000 --base-timestamp 1700000000000
//! ```
//!
//! With `--transactions N` it instead writes N transactions of 10 records each (values
//! `ours-{t}-{i}`) to topic `<prefix>` with transactional id `<prefix>-writer`, aborting every
//! third (t % 3 == 2), for `tests/interop/transactions_interop.py`.

use std::process::ExitCode;
use std::time::Duration;

use kafka_client::{Compression, Producer, ProducerConfig, ProducerRecord};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut bootstrap = None;
    let mut prefix = "interop".to_owned();
    let mut records = 1000u64;
    let mut transactions = None;
    let mut base: i64 =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--bootstrap-server", Some(v)) => bootstrap = Some(v),
            ("--topic-prefix", Some(v)) => prefix = v,
            ("--records", Some(v)) => records = v.parse().unwrap_or(records),
            ("--base-timestamp", Some(v)) => base = v.parse().unwrap_or(base),
            ("--transactions", Some(v)) => transactions = v.parse::<u64>().ok(),
            _ => {
                eprintln!("usage: interop-produce --bootstrap-server HOST:PORT [--topic-prefix P] [--records N] [--base-timestamp MS]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(bootstrap) = bootstrap else {
        eprintln!("--bootstrap-server is required");
        return ExitCode::from(2);
    };
    let outcome = match transactions {
        Some(n) => run_transactions(&bootstrap, &prefix, n).await,
        None => run(&bootstrap, &prefix, records, base).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-produce: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(bootstrap: &str, prefix: &str, records: u64, base: i64) -> Result<(), Box<dyn std::error::Error>> {
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let topic = format!("{prefix}-{}", codec.name());
        kafka_examples::perf::create_topic(bootstrap, &topic, 2).await?;
        let producer = Producer::new(ProducerConfig::new(bootstrap).compression(codec))?;
        let mut pending = Vec::new();
        for i in 0..records {
            let (key, value, trace) = kafka_examples::fixture::parts(i);
            let record = ProducerRecord::new(&topic)
                .key(&key)
                .value(&value)
                .header("trace", &trace)
                .null_header("empty")
                .timestamp(base + i as i64);
            pending.push(producer.send(record).await?);
        }
        for p in pending {
            p.await?;
        }
        producer.close(Duration::from_secs(10)).await?;
        println!("produced {records} records to {topic}");
    }
    Ok(())
}

async fn run_transactions(bootstrap: &str, topic: &str, transactions: u64) -> Result<(), Box<dyn std::error::Error>> {
    kafka_examples::perf::create_topic(bootstrap, topic, 2).await?;
    let producer = Producer::new(ProducerConfig::new(bootstrap).transactional_id(format!("{topic}-writer")))?;
    producer.init_transactions().await?;
    for t in 0..transactions {
        producer.begin_transaction()?;
        for i in 0..10 {
            let value = format!("ours-{t}-{i}");
            let key = format!("k{i}");
            drop(producer.send(ProducerRecord::new(topic).key(&key).value(&value)).await?);
        }
        if t % 3 == 2 {
            producer.flush().await?;
            producer.abort_transaction().await?;
        } else {
            producer.commit_transaction().await?;
        }
    }
    producer.close(Duration::from_secs(10)).await?;
    println!("wrote {transactions} transactions to {topic}");
    Ok(())
}
