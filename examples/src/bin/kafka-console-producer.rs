//! `kafka-console-producer`: one record per line of stdin, with the flags of Kafka's
//! `kafka-console-producer.sh`. Delivery errors go to stderr as they happen; the exit code is
//! 1 if any record was not delivered.
//!
//! ```text
//! printf 'c1,order-1\nc2,order-2\n' | kafka-console-producer --bootstrap-server localhost:9092 \
//!     --topic orders --property parse.key=true --property key.separator=,
//! ```

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use kafka_client::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use kafka_examples::cli::{self, switch, value, Args, Flag, ParseError};

const TOOL: &str = "kafka-console-producer";

const USAGE: &str = "\
kafka-console-producer: sends one record per line of stdin.

USAGE:
    kafka-console-producer --bootstrap-server HOST:PORT --topic T [options] < lines

OPTIONS:
    --bootstrap-server HOST:PORT   the cluster (--broker-list is accepted too)
    --topic T                      the topic
    --property K=V                 line parsing (repeatable): parse.key=true splits each line at
                                   key.separator (default a tab) into key and value;
                                   ignore.error=true sends a line without the separator as a value;
                                   parse.headers=true reads `h1:v1,h2:v2` before headers.delimiter
                                   (default a tab; headers.separator `,`, headers.key.separator `:`)
    --producer-property K=V        a producer setting by its Java name (repeatable)
    --producer.config FILE         producer settings from a properties file
    --compression-codec [CODEC]    none, gzip, snappy, lz4 or zstd (no value: gzip)
    --request-required-acks ACKS   all, 1 or 0
    --sync                         wait for each record before reading the next line
    --timeout MS                   linger.ms
    --max-block-ms MS              max.block.ms (default 60000): how long a send waits for
                                   metadata or buffer space; also bounds the startup check
    -h, --help                     this text

Exit codes: 0 every record delivered, 1 a record failed or the cluster could not be reached,
2 bad usage.
";

const FLAGS: &[Flag] = &[
    value("--bootstrap-server"),
    value("--broker-list"),
    value("--topic"),
    value("--property"),
    value("--producer-property"),
    value("--producer.config"),
    value("--compression-codec"),
    value("--request-required-acks"),
    switch("--sync"),
    value("--timeout"),
    value("--max-block-ms"),
    value("--batch-size"),
];

struct LineFormat {
    parse_key: bool,
    separator: String,
    ignore_error: bool,
    parse_headers: bool,
    headers_delimiter: String,
    headers_separator: String,
    headers_key_separator: String,
}

fn main() -> ExitCode {
    // `--compression-codec` without a value means gzip, as in Kafka's tool.
    let mut raw: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = raw.iter().position(|a| a == "--compression-codec") {
        if raw.get(i + 1).map_or(true, |next| next.starts_with("--")) {
            raw.insert(i + 1, "gzip".to_owned());
        }
    }
    let args = match Args::parse(raw, FLAGS) {
        Ok(a) => a,
        Err(ParseError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
    };
    let setup = || -> Result<(ProducerConfig, String, LineFormat, bool), Result<String, String>> {
        let usage = |e: ParseError| match e {
            ParseError::Usage(m) => Err(m),
            ParseError::Help => Err(String::new()),
        };
        let bootstrap = args
            .get("--bootstrap-server")
            .or_else(|| args.get("--broker-list"))
            .ok_or_else(|| Err("--bootstrap-server is required".to_owned()))?;
        let topic = args.required("--topic").map_err(usage)?.to_owned();
        let mut properties: Vec<(String, String)> = Vec::new();
        if let Some(path) = args.get("--producer.config") {
            properties.extend(cli::read_properties(path).map_err(Ok)?);
        }
        for (flag, key) in [
            ("--compression-codec", "compression.type"),
            ("--request-required-acks", "acks"),
            ("--timeout", "linger.ms"),
            ("--max-block-ms", "max.block.ms"),
            ("--batch-size", "batch.size"),
        ] {
            if let Some(v) = args.get(flag) {
                properties.push((key.to_owned(), v.to_owned()));
            }
        }
        properties.extend(args.pairs("--producer-property").map_err(usage)?);
        let mut config = ProducerConfig::new(bootstrap).client_id("console-producer");
        for (k, v) in &properties {
            config = config.set(k, v).map_err(|e| Ok(e.to_string()))?;
        }
        let mut format = LineFormat {
            parse_key: false,
            separator: "\t".to_owned(),
            ignore_error: false,
            parse_headers: false,
            headers_delimiter: "\t".to_owned(),
            headers_separator: ",".to_owned(),
            headers_key_separator: ":".to_owned(),
        };
        for (k, v) in args.pairs("--property").map_err(usage)? {
            match k.as_str() {
                "parse.key" => format.parse_key = v.eq_ignore_ascii_case("true"),
                "key.separator" => format.separator = v,
                "ignore.error" => format.ignore_error = v.eq_ignore_ascii_case("true"),
                "parse.headers" => format.parse_headers = v.eq_ignore_ascii_case("true"),
                "headers.delimiter" => format.headers_delimiter = v,
                "headers.separator" => format.headers_separator = v,
                "headers.key.separator" => format.headers_key_separator = v,
                other => return Err(Err(format!("--property {other}: unknown"))),
            }
        }
        if [&format.separator, &format.headers_delimiter, &format.headers_separator, &format.headers_key_separator]
            .iter()
            .any(|s| s.is_empty())
        {
            return Err(Err("--property: separators and delimiters must not be empty".to_owned()));
        }
        Ok((config, topic, format, args.has("--sync")))
    };
    let (config, topic, format, sync) = match setup() {
        Ok(x) => x,
        Err(Err(m)) => return cli::usage_error(TOOL, &m, USAGE),
        Err(Ok(m)) => return cli::fail(TOOL, m),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(TOOL, e),
    };
    match runtime.block_on(run(config, &topic, &format, sync)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => cli::fail(TOOL, format!("{failed} record(s) were not delivered")),
        Err(e) => cli::fail(TOOL, e),
    }
}

/// Sends every line; returns how many records failed.
async fn run(config: ProducerConfig, topic: &str, format: &LineFormat, sync: bool) -> Result<u64, String> {
    let probe = cli::probe(&config.client, config.max_block).await?;
    probe.close();
    let max_block = config.max_block;
    let producer = Producer::new(config).map_err(|e| e.to_string())?;
    // Lines are read on a blocking thread and handed over in order.
    // Lines are bytes: input that is not UTF-8 is sent as it is, as Kafka's tool does.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(1024);
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut stdin = std::io::stdin().lock();
        let mut line_no = 0u64;
        loop {
            let mut line = Vec::new();
            if stdin.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            line_no += 1;
            if tx.blocking_send((line_no, line)).is_err() {
                return Ok(());
            }
        }
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, String, usize, DeliveryFuture)>();
    let topic_owned = topic.to_owned();
    // Delivery outcomes are reported as they complete, in the order of the lines.
    let reporter = tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some((line_no, key, len, f)) = done_rx.recv().await {
            if let Err(e) = f.await {
                failed += 1;
                report(&topic_owned, line_no, &key, len, &e.to_string());
            }
        }
        failed
    });
    let mut failed = 0u64;
    while let Some((line_no, line)) = rx.recv().await {
        // `h1:v1,h2:v2<delimiter>rest` with parse.headers (Kafka 3.2's format).
        let (headers, rest): (Vec<(String, Vec<u8>)>, &[u8]) = if format.parse_headers {
            match split_once(&line, format.headers_delimiter.as_bytes()) {
                Some((h, rest)) => (parse_headers(h, format), rest),
                None => {
                    failed += 1;
                    eprintln!("{TOOL}: error: no headers delimiter found on line number {line_no}");
                    continue;
                }
            }
        } else {
            (Vec::new(), line.as_slice())
        };
        let line = rest.to_vec();
        let (key, value) = if format.parse_key {
            match split_once(&line, format.separator.as_bytes()) {
                Some((k, v)) => (Some(k), v),
                None if format.ignore_error => (None, line.as_slice()),
                None => {
                    failed += 1;
                    eprintln!(
                        "{TOOL}: error: no key separator found on line number {line_no}: '{}'",
                        String::from_utf8_lossy(&line)
                    );
                    continue;
                }
            }
        } else {
            (None, line.as_slice())
        };
        let mut record = ProducerRecord::new(topic).value(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        for (k, v) in &headers {
            record = record.header(k, v);
        }
        let key_text = key.map_or_else(|| "null".to_owned(), |k| String::from_utf8_lossy(k).into_owned());
        match producer.send(record).await {
            Ok(f) if sync => {
                if let Err(e) = f.await {
                    failed += 1;
                    report(topic, line_no, &key_text, value.len(), &e.to_string());
                }
            }
            Ok(f) => {
                let _ = done_tx.send((line_no, key_text, value.len(), f));
            }
            Err(e) => {
                failed += 1;
                report(topic, line_no, &key_text, value.len(), &e.to_string());
            }
        }
    }
    drop(done_tx);
    if let Ok(Err(e)) = reader.await {
        failed += 1;
        eprintln!("{TOOL}: error: reading stdin: {e}");
    }
    let close = producer.close(max_block.max(Duration::from_secs(5))).await;
    failed += reporter.await.unwrap_or(0);
    if let Err(e) = close {
        eprintln!("{TOOL}: error: closing the producer: {e}");
    }
    Ok(failed)
}

/// `k1:v1,k2:v2` into headers (a header without the key separator gets an empty value).
fn parse_headers(text: &[u8], format: &LineFormat) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let (one, more) = match split_once(rest, format.headers_separator.as_bytes()) {
            Some((one, more)) => (one, Some(more)),
            None => (rest, None),
        };
        if !one.is_empty() {
            let (k, v) = split_once(one, format.headers_key_separator.as_bytes()).unwrap_or((one, &[]));
            out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
        }
        match more {
            Some(m) => rest = m,
            None => return out,
        }
    }
}

/// Splits `line` at the first `separator`.
fn split_once<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = line.windows(separator.len()).position(|w| w == separator)?;
    Some((line.get(..at)?, line.get(at + separator.len()..)?))
}

fn report(topic: &str, line_no: u64, key: &str, len: usize, error: &str) {
    eprintln!(
        "{TOOL}: error when sending message to topic {topic} (line {line_no}) with key: {key}, value: {len} bytes with error: {}",
        error.replace('\n', " ")
    );
}
