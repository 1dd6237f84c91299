//! `kafka-console-consumer`: prints records to stdout, with the flags and output of Kafka's
//! `kafka-console-consumer.sh`.
//!
//! ```text
//! kafka-console-consumer --bootstrap-server localhost:9092 --topic orders --from-beginning \
//!     --property print.key=true --property key.separator=, --max-messages 10
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kafka_client::{Consumer, ConsumerConfig, ConsumerRecord, OffsetAndMetadata, TopicPartition};
use kafka_examples::cli::{self, switch, value, Args, Flag, ParseError};
use kafka_protocol::records::TimestampType;

const TOOL: &str = "kafka-console-consumer";

const USAGE: &str = "\
kafka-console-consumer: prints the records of a topic to stdout.

USAGE:
    kafka-console-consumer --bootstrap-server HOST:PORT --topic T [options]

OPTIONS:
    --bootstrap-server HOST:PORT   the cluster
    --topic T                      the topic
    --group G                      consume as a member of group G (default: a fresh group, no
                                   commits kept); offsets of printed records are committed
    --from-beginning               start at the earliest offset when there is no committed one
    --partition P                  read only partition P (no group membership)
    --offset O                     with --partition: a number, earliest or latest (default latest)
    --max-messages N               stop after N records
    --timeout-ms MS                stop when no record arrived for this long
    --isolation-level L            read_uncommitted (default) or read_committed
    --property K=V                 output (repeatable): print.key, print.value, print.timestamp,
                                   print.partition, print.offset, print.headers (true/false),
                                   key.separator, headers.separator (default a comma)
                                   (default a tab), line.separator (default a newline),
                                   null.literal (default null)
    --consumer-property K=V        a consumer setting by its Java name (repeatable)
    --consumer.config FILE         consumer settings from a properties file
    -h, --help                     this text

A summary line (\"Processed a total of N messages\") goes to stderr at the end. Ctrl-C stops.
Exit codes: 0 done, 1 the cluster could not be reached or consuming failed, 2 bad usage.
";

const FLAGS: &[Flag] = &[
    value("--bootstrap-server"),
    value("--topic"),
    value("--group"),
    switch("--from-beginning"),
    value("--partition"),
    value("--offset"),
    value("--max-messages"),
    value("--timeout-ms"),
    value("--isolation-level"),
    value("--property"),
    value("--consumer-property"),
    value("--consumer.config"),
    switch("--skip-message-on-error"),
];

struct Format {
    key: bool,
    value: bool,
    timestamp: bool,
    partition: bool,
    offset: bool,
    headers: bool,
    key_separator: Vec<u8>,
    headers_separator: Vec<u8>,
    line_separator: Vec<u8>,
    null_literal: Vec<u8>,
}

enum Start {
    Earliest,
    Latest,
    At(i64),
}

struct Plan {
    config: ConsumerConfig,
    topic: String,
    group: bool,
    partition: Option<(i32, Start)>,
    max_messages: Option<u64>,
    idle_timeout: Option<Duration>,
    format: Format,
}

fn plan(args: &Args) -> Result<Plan, Result<String, String>> {
    let usage = |e: ParseError| match e {
        ParseError::Usage(m) => Err(m),
        ParseError::Help => Err(String::new()),
    };
    let bootstrap = args.required("--bootstrap-server").map_err(usage)?;
    let topic = args.required("--topic").map_err(usage)?.to_owned();
    let partition = args.number::<i32>("--partition").map_err(usage)?;
    if args.has("--offset") && partition.is_none() {
        return Err(Err("--offset needs --partition".to_owned()));
    }
    if partition.is_some() && args.has("--group") {
        return Err(Err("--group cannot be used with --partition".to_owned()));
    }
    let from_beginning = args.has("--from-beginning");
    let start = match args.get("--offset") {
        None if from_beginning => Start::Earliest,
        None | Some("latest") => Start::Latest,
        Some("earliest") => Start::Earliest,
        Some(n) => match n.parse::<i64>() {
            Ok(o) if o >= 0 => Start::At(o),
            _ => return Err(Err(format!("--offset {n}: expected a non-negative number, earliest or latest"))),
        },
    };
    let group = args.get("--group");
    let mut properties: Vec<(String, String)> = vec![
        ("client.id".into(), "console-consumer".into()),
        ("auto.offset.reset".into(), if from_beginning { "earliest" } else { "latest" }.into()),
        // Offsets of printed records are committed by this tool (a poll may return records
        // that --max-messages leaves unprinted).
        ("enable.auto.commit".into(), "false".into()),
    ];
    if partition.is_none() {
        let id =
            group.map(str::to_owned).unwrap_or_else(|| format!("console-consumer-{}", rand::random::<u32>() % 100_000));
        properties.push(("group.id".into(), id));
    }
    if let Some(level) = args.get("--isolation-level") {
        properties.push(("isolation.level".into(), level.to_owned()));
    }
    if let Some(path) = args.get("--consumer.config") {
        properties.extend(cli::read_properties(path).map_err(Ok)?);
    }
    properties.extend(args.pairs("--consumer-property").map_err(usage)?);
    let mut config = ConsumerConfig::new(bootstrap);
    for (k, v) in &properties {
        config = config.set(k, v).map_err(|e| Ok(e.to_string()))?;
    }
    let mut format = Format {
        key: false,
        value: true,
        timestamp: false,
        partition: false,
        offset: false,
        headers: false,
        key_separator: b"\t".to_vec(),
        headers_separator: b",".to_vec(),
        line_separator: b"\n".to_vec(),
        null_literal: b"null".to_vec(),
    };
    for (k, v) in args.pairs("--property").map_err(usage)? {
        let on = v.eq_ignore_ascii_case("true");
        match k.as_str() {
            "print.key" => format.key = on,
            "print.value" => format.value = on,
            "print.timestamp" => format.timestamp = on,
            "print.partition" => format.partition = on,
            "print.offset" => format.offset = on,
            "print.headers" => format.headers = on,
            "headers.separator" => format.headers_separator = unescape(&v),
            "key.separator" => format.key_separator = unescape(&v),
            "line.separator" => format.line_separator = unescape(&v),
            "null.literal" => format.null_literal = v.into_bytes(),
            other => return Err(Err(format!("--property {other}: unknown"))),
        }
    }
    Ok(Plan {
        config,
        topic,
        group: group.is_some(),
        partition: partition.map(|p| (p, start)),
        max_messages: args.number("--max-messages").map_err(usage)?,
        idle_timeout: args.number::<u64>("--timeout-ms").map_err(usage)?.map(Duration::from_millis),
        format,
    })
}

/// `\t`, `\n` and `\\` as Kafka's tools accept them on the command line.
fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\").into_bytes()
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1), FLAGS) {
        Ok(a) => a,
        Err(ParseError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
    };
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(Err(m)) => return cli::usage_error(TOOL, &m, USAGE),
        Err(Ok(m)) => return cli::fail(TOOL, m),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(TOOL, e),
    };
    match runtime.block_on(run(plan)) {
        Ok(count) => {
            eprintln!("Processed a total of {count} messages");
            ExitCode::SUCCESS
        }
        Err((Some(count), e)) => {
            eprintln!("Processed a total of {count} messages");
            cli::fail(TOOL, e)
        }
        // Failed before consuming anything (unreachable cluster, unknown topic): one line.
        Err((None, e)) => cli::fail(TOOL, e),
    }
}

fn write_record(out: &mut impl Write, f: &Format, r: &ConsumerRecord) -> std::io::Result<()> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    if f.timestamp {
        let kind = match r.timestamp_type() {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        fields.push(if r.timestamp() < 0 {
            b"NO_TIMESTAMP".to_vec()
        } else {
            format!("{kind}:{}", r.timestamp()).into_bytes()
        });
    }
    if f.partition {
        fields.push(format!("Partition:{}", r.partition()).into_bytes());
    }
    if f.offset {
        fields.push(format!("Offset:{}", r.offset()).into_bytes());
    }
    if f.headers {
        let headers: Vec<Vec<u8>> = r
            .headers()
            .map(|h| {
                let mut kv = h.key.to_vec();
                kv.push(b':');
                kv.extend_from_slice(h.value.unwrap_or(&f.null_literal));
                kv
            })
            .collect();
        fields.push(if headers.is_empty() {
            b"NO_HEADERS".to_vec()
        } else {
            headers.join(f.headers_separator.as_slice())
        });
    }
    if f.key {
        fields.push(r.key().map_or_else(|| f.null_literal.clone(), <[u8]>::to_vec));
    }
    if f.value {
        fields.push(r.value().map_or_else(|| f.null_literal.clone(), <[u8]>::to_vec));
    }
    out.write_all(&fields.join(f.key_separator.as_slice()))?;
    out.write_all(&f.line_separator)
}

/// Consumes until --max-messages, --timeout-ms or Ctrl-C; returns the count printed.
async fn run(plan: Plan) -> Result<u64, (Option<u64>, String)> {
    let timeout = plan.config.default_api_timeout;
    cli::probe(&plan.config.client, timeout).await.map_err(|e| (None, e))?.close();
    let consumer = Consumer::new(plan.config).map_err(|e| (None, e.to_string()))?;
    consumer
        .client()
        .wait_for_topic(&plan.topic, timeout, "default.api.timeout.ms")
        .await
        .map_err(|e| (None, e.to_string()))?;
    match &plan.partition {
        Some((p, start)) => {
            let tp = TopicPartition::new(plan.topic.clone(), *p);
            let known = consumer.client().metadata().topic(&plan.topic).is_some_and(|t| t.partition(*p).is_some());
            if !known {
                return Err((None, format!("topic {} has no partition {p}", plan.topic)));
            }
            consumer.assign([tp.clone()]).map_err(|e| (None, e.to_string()))?;
            let r = match start {
                Start::Earliest => consumer.seek_to_beginning(&[tp]),
                Start::Latest => consumer.seek_to_end(&[tp]),
                Start::At(o) => consumer.seek(&tp, *o),
            };
            r.map_err(|e| (None, e.to_string()))?;
        }
        None => consumer.subscribe([plan.topic.as_str()]).map_err(|e| (None, e.to_string()))?,
    }

    let mut count = 0u64;
    let mut printed: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    let mut last_record = Instant::now();
    let mut last_commit = Instant::now();
    let stdout = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome: Result<(), String> = 'outer: loop {
        if plan.max_messages.is_some_and(|m| count >= m) {
            break Ok(());
        }
        let batch = tokio::select! {
            b = consumer.poll(Duration::from_millis(200)) => b,
            _ = &mut ctrl_c => break Ok(()),
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => break Err(e.to_string()),
        };
        if batch.is_empty() {
            if plan.idle_timeout.is_some_and(|t| last_record.elapsed() >= t) {
                break Ok(());
            }
            continue;
        }
        last_record = Instant::now();
        let mut out = stdout.lock();
        for r in &batch {
            if plan.max_messages.is_some_and(|m| count >= m) {
                break;
            }
            if let Err(e) = write_record(&mut out, &plan.format, r) {
                // A closed pipe (`| head`) ends the run quietly, like Kafka's tool.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break 'outer Ok(());
                }
                break 'outer Err(format!("writing to stdout: {e}"));
            }
            count += 1;
            printed.insert(r.topic_partition(), OffsetAndMetadata::new(r.offset() + 1));
        }
        let _ = out.flush();
        drop(out);
        if plan.group && last_commit.elapsed() > Duration::from_secs(5) && !printed.is_empty() {
            let _ = consumer.commit_offsets(printed.clone()).await;
            last_commit = Instant::now();
        }
    };
    if plan.group && !printed.is_empty() {
        if let Err(e) = consumer.commit_offsets(printed).await {
            eprintln!("{TOOL}: warning: committing the offsets of printed records failed: {e}");
        }
    }
    let _ = consumer.close().await;
    outcome.map(|()| count).map_err(|e| (Some(count), e))
}
