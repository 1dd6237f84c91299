//! The command-line tools run as processes against a bundled cluster listening on TCP:
//! their output formats, exit codes and error paths (bad flags, an unreachable server, a
//! record that cannot be delivered).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kafka_admin::{AdminClient, AdminConfig, TopicPartition};
use kafka_broker::Cluster;
use kafka_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use tokio::io::AsyncWriteExt;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn exe(tool: &str) -> &'static str {
    match tool {
        "kafka-topics" => env!("CARGO_BIN_EXE_kafka-topics"),
        "kafka-console-producer" => env!("CARGO_BIN_EXE_kafka-console-producer"),
        "kafka-console-consumer" => env!("CARGO_BIN_EXE_kafka-console-consumer"),
        "kafka-consumer-groups" => env!("CARGO_BIN_EXE_kafka-consumer-groups"),
        "kafka-perf" => env!("CARGO_BIN_EXE_kafka-perf"),
        other => panic!("no tool {other}"),
    }
}

/// Runs a tool to completion (at most 60 s) with `stdin` as its input.
async fn run(tool: &str, args: &[&str], stdin: &str) -> Run {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe(tool))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{tool} {args:?} did not finish within 60 s"))
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

async fn cluster() -> Cluster {
    Cluster::builder().brokers(3).start().await.unwrap()
}

fn admin(cluster: &Cluster) -> AdminClient {
    AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_create_list_describe_alter_delete() {
    let cluster = cluster().await;
    let b = cluster.bootstrap_servers();
    let base = ["--bootstrap-server", b.as_str()];
    let with =
        |extra: &[&'static str]| -> Vec<String> { base.iter().chain(extra.iter()).map(|s| s.to_string()).collect() };
    let topics = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("kafka-topics", &refs, "").await
    };

    let r = topics(with(&[
        "--create",
        "--topic",
        "orders",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--config",
        "retention.ms=100000",
    ]))
    .await;
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "Created topic orders.\n", ""));
    let r = topics(with(&["--create", "--topic", "orders", "--partitions", "3", "--replication-factor", "3"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("kafka-topics: error: topic orders: TOPIC_ALREADY_EXISTS"), "{}", r.stderr);
    let r = topics(with(&["--create", "--topic", "orders", "--partitions", "3", "--if-not-exists"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
    let r = topics(with(&["--create", "--topic", "pinned", "--replica-assignment", "1:2,2:3"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = topics(with(&["--list"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "orders\npinned\n"));

    let r = topics(with(&["--describe", "--topic", "orders"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    let head: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(head[0], "Topic: orders");
    assert!(head[1].starts_with("TopicId: ") && head[1].len() > "TopicId: ".len() + 10, "{}", head[1]);
    assert_eq!(&head[2..], ["PartitionCount: 3", "ReplicationFactor: 3", "Configs: retention.ms=100000"]);
    let described = admin(&cluster).describe_topics(["orders"]).await.unwrap()["orders"].clone().unwrap();
    for (line, p) in lines[1..].iter().zip(&described.partitions) {
        let ids = |v: &[i32]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            *line,
            format!(
                "\tTopic: orders\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                p.partition,
                p.leader.unwrap(),
                ids(&p.replicas),
                ids(&p.isr)
            )
        );
    }
    // Describing everything shows both topics; a regular expression picks one.
    let r = topics(with(&["--describe"])).await;
    assert_eq!(r.stdout.lines().filter(|l| l.starts_with("Topic: ")).count(), 2);
    let r = topics(with(&["--describe", "--topic", "pin.*"])).await;
    assert!(r.stdout.starts_with("Topic: pinned\t"), "{}", r.stdout);

    let r = topics(with(&["--alter", "--topic", "orders", "--partitions", "6"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = topics(with(&["--describe", "--topic", "orders"])).await;
    assert!(r.stdout.contains("\tPartitionCount: 6\t"), "{}", r.stdout);
    let r = topics(with(&["--alter", "--topic", "orders", "--partitions", "2"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("partitions cannot be removed"), "{}", r.stderr);

    let r = topics(with(&["--delete", "--topic", "orders"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = topics(with(&["--list"])).await;
    assert_eq!(r.stdout, "pinned\n");
    let r = topics(with(&["--describe", "--topic", "orders"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "kafka-topics: error: topic 'orders' does not exist as expected\n");
    let r = topics(with(&["--delete", "--topic", "orders", "--if-exists"])).await;
    assert_eq!(r.code, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_has_help_and_refuses_bad_flags_with_usage() {
    for tool in
        ["kafka-topics", "kafka-console-producer", "kafka-console-consumer", "kafka-consumer-groups", "kafka-perf"]
    {
        let r = run(tool, &["--help"], "").await;
        assert_eq!(r.code, 0, "{tool}");
        assert!(r.stdout.contains("USAGE:"), "{tool}: {}", r.stdout);
        let r = run(tool, &["--bootstrap-server", "localhost:9092", "--no-such-flag"], "").await;
        assert_eq!(r.code, 2, "{tool}: {}", r.stderr);
        assert!(r.stderr.contains("USAGE:"), "{tool}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{tool}: {}", r.stderr);
    }
    let r = run("kafka-topics", &["--list"], "").await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("kafka-topics: --bootstrap-server is required"), "{}", r.stderr);
    let r = run("kafka-consumer-groups", &["--bootstrap-server", "x:1", "--list", "--delete"], "").await;
    assert_eq!(r.code, 2);
    let r = run("kafka-console-consumer", &["--bootstrap-server", "x:1", "--topic", "t", "--offset", "3"], "").await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--offset needs --partition"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_one_line_and_a_non_zero_exit_within_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let a = addr.as_str();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("kafka-topics", vec!["--bootstrap-server", a, "--list", "--command-property", "default.api.timeout.ms=1500"]),
        ("kafka-consumer-groups", vec!["--bootstrap-server", a, "--list", "--timeout", "1500"]),
        ("kafka-console-producer", vec!["--bootstrap-server", a, "--topic", "t", "--max-block-ms", "1500"]),
        (
            "kafka-console-consumer",
            vec!["--bootstrap-server", a, "--topic", "t", "--consumer-property", "default.api.timeout.ms=1500"],
        ),
    ];
    for (tool, args) in cases {
        let r = run(tool, &args, "a line\n").await;
        assert_eq!(r.code, 1, "{tool}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{tool}: {}", r.stderr);
        assert!(r.stderr.starts_with(&format!("{tool}: error: ")), "{tool}: {}", r.stderr);
        assert!(r.stderr.contains(a) || r.stderr.contains("Connection refused"), "{tool}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked") && !r.stderr.contains("backtrace"), "{tool}: {}", r.stderr);
        assert!(r.took < Duration::from_secs(10), "{tool} took {:?}", r.took);
        assert_eq!(r.stdout, "", "{tool}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_producer_and_consumer_round_trip_keys_and_groups() {
    let cluster = cluster().await;
    cluster.create_topic("orders", 3, 3).await.unwrap();
    let b = cluster.bootstrap_servers();
    let lines = "c1,order-1\nc2,order-2\nc3,order-3\nc1,order-4\n";
    let r = run(
        "kafka-console-producer",
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            "orders",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=,",
            "--producer-property",
            "acks=all",
            "--compression-codec",
            "lz4",
        ],
        lines,
    )
    .await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{}", r.stderr);

    let consume = |max: &'static str| {
        let b = b.clone();
        async move {
            run(
                "kafka-console-consumer",
                &[
                    "--bootstrap-server",
                    &b,
                    "--topic",
                    "orders",
                    "--group",
                    "order-service",
                    "--from-beginning",
                    "--property",
                    "print.key=true",
                    "--property",
                    "key.separator=,",
                    "--max-messages",
                    max,
                    "--timeout-ms",
                    "3000",
                ],
                "",
            )
            .await
        }
    };
    let r = consume("3").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stderr, "Processed a total of 3 messages\n");
    let first: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(first.len(), 3);
    // The group committed exactly what was printed: the next run gets the fourth record.
    let r = consume("10").await;
    assert_eq!(r.stderr, "Processed a total of 1 messages\n", "{}", r.stderr);
    let mut all: Vec<&str> = first.into_iter().chain(r.stdout.lines()).collect();
    all.sort_unstable();
    assert_eq!(all, vec!["c1,order-1", "c1,order-4", "c2,order-2", "c3,order-3"]);
    let offsets = admin(&cluster).list_consumer_group_offsets("order-service", None).await.unwrap();
    assert_eq!(offsets.values().map(|o| o.as_ref().unwrap().as_ref().unwrap().offset).sum::<i64>(), 4);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_producer_exits_non_zero_when_a_record_fails() {
    let cluster = cluster().await;
    cluster.create_topic("t", 1, 1).await.unwrap();
    let b = cluster.bootstrap_servers();
    let big = "x".repeat(5000);
    // A CRLF line end is stripped like LF.
    let input = format!("good-1\r\n{big}\ngood-2\n");
    let r = run(
        "kafka-console-producer",
        &["--bootstrap-server", &b, "--topic", "t", "--producer-property", "max.request.size=1000"],
        &input,
    )
    .await;
    assert_eq!(r.code, 1);
    let errors: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{}", r.stderr);
    assert!(errors[0].contains("(line 2)") && errors[0].contains("value: 5000 bytes"), "{}", errors[0]);
    assert_eq!(errors[1], "kafka-console-producer: error: 1 record(s) were not delivered");
    // The other lines were delivered.
    let r = run(
        "kafka-console-consumer",
        &["--bootstrap-server", &b, "--topic", "t", "--from-beginning", "--max-messages", "5", "--timeout-ms", "2000"],
        "",
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "good-1\ngood-2\n"), "{}", r.stderr);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_consumer_reads_one_partition_from_an_offset() {
    let cluster = cluster().await;
    cluster.create_topic("t", 2, 1).await.unwrap();
    let b = cluster.bootstrap_servers();
    let producer = Producer::new(ProducerConfig::new(&b)).unwrap();
    for i in 0..5 {
        let v = format!("v{i}");
        producer.send(ProducerRecord::new("t").partition(1).key("k").value(&v)).await.unwrap().await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let r = run(
        "kafka-console-consumer",
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            "t",
            "--partition",
            "1",
            "--offset",
            "2",
            "--max-messages",
            "2",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
            "--property",
            "print.key=true",
            "--property",
            "print.timestamp=true",
        ],
        "",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Vec<&str>> = r.stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    for (i, fields) in lines.iter().enumerate() {
        assert!(fields[0].starts_with("CreateTime:"), "{fields:?}");
        assert_eq!(
            &fields[1..],
            ["Partition:1".to_string(), format!("Offset:{}", i + 2), "k".into(), format!("v{}", i + 2)]
        );
    }
    let r = run("kafka-console-consumer", &["--bootstrap-server", &b, "--topic", "t", "--partition", "7"], "").await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no partition 7"), "{}", r.stderr);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_list_describe_reset_and_delete() {
    let cluster = cluster().await;
    cluster.create_topic("orders", 2, 3).await.unwrap();
    let b = cluster.bootstrap_servers();
    let producer = Producer::new(ProducerConfig::new(&b)).unwrap();
    for i in 0..10 {
        let v = format!("v{i}");
        producer.send(ProducerRecord::new("orders").partition(i % 2).value(&v)).await.unwrap().await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let consumer = Consumer::new(
        ConsumerConfig::new(&b)
            .set("group.id", "billing")
            .unwrap()
            .set("client.id", "billing-client")
            .unwrap()
            .set("auto.offset.reset", "earliest")
            .unwrap()
            .set("enable.auto.commit", "false")
            .unwrap(),
    )
    .unwrap();
    consumer.subscribe(["orders"]).unwrap();
    let mut seen = 0;
    while seen < 10 {
        seen += consumer.poll(Duration::from_millis(200)).await.unwrap().len();
    }
    // Commit 3 of partition 0's 5 records and all of partition 1's.
    consumer
        .commit_offsets(BTreeMap::from([
            (TopicPartition::new("orders", 0), kafka_client::OffsetAndMetadata::new(3)),
            (TopicPartition::new("orders", 1), kafka_client::OffsetAndMetadata::new(5)),
        ]))
        .await
        .unwrap();
    let groups = |args: Vec<&'static str>| {
        let b = b.clone();
        async move {
            let mut full = vec!["--bootstrap-server", b.as_str()];
            full.extend(args);
            run("kafka-consumer-groups", &full, "").await
        }
    };

    let r = groups(vec!["--list"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "billing\n"));
    let r = groups(vec!["--list", "--state"]).await;
    let rows: Vec<Vec<&str>> = r.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, vec![vec!["GROUP", "STATE"], vec!["billing", "Stable"]]);

    let r = groups(vec!["--describe", "--group", "billing"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    );
    let rows: Vec<Vec<&str>> = lines[2..].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    assert_eq!(&rows[0][..6], ["billing", "orders", "0", "3", "5", "2"]);
    assert_eq!(&rows[1][..6], ["billing", "orders", "1", "5", "5", "0"]);
    for row in &rows {
        assert!(!row[6].is_empty() && row[6] != "-");
        assert!(row[7].contains("127.0.0.1"), "{row:?}");
        assert_eq!(row[8], "billing-client");
    }
    // Columns line up: each header word starts where its values start.
    let col = lines[1].find("CURRENT-OFFSET").unwrap();
    assert_eq!(&lines[2][col..col + 1], "3");
    let r = groups(vec!["--describe", "--group", "billing", "--members"]).await;
    let rows: Vec<Vec<&str>> = r.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]);
    assert_eq!(rows[1][3..], ["billing-client", "2"]);

    // No reset while the member is active.
    let r =
        groups(vec!["--reset-offsets", "--group", "billing", "--topic", "orders", "--to-earliest", "--execute"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("inactive, but the current state is Stable"), "{}", r.stderr);
    consumer.close().await.unwrap();

    let committed = |cluster: &Cluster| {
        let admin = admin(cluster);
        async move {
            let o = admin.list_consumer_group_offsets("billing", None).await.unwrap();
            o.into_iter().map(|(tp, r)| (tp.partition, r.unwrap().unwrap().offset)).collect::<Vec<_>>()
        }
    };
    let r =
        groups(vec!["--reset-offsets", "--group", "billing", "--topic", "orders", "--to-earliest", "--dry-run"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<Vec<&str>> = r.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        vec![
            vec!["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
            vec!["billing", "orders", "0", "0"],
            vec!["billing", "orders", "1", "0"]
        ]
    );
    assert_eq!(committed(&cluster).await, vec![(0, 3), (1, 5)], "a dry run changes nothing");
    let r =
        groups(vec!["--reset-offsets", "--group", "billing", "--topic", "orders:1", "--to-offset", "2", "--execute"])
            .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(committed(&cluster).await, vec![(0, 3), (1, 2)]);
    let r =
        groups(vec!["--reset-offsets", "--group", "billing", "--all-topics", "--shift-by", "-1", "--execute"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(committed(&cluster).await, vec![(0, 2), (1, 1)]);
    let r =
        groups(vec!["--reset-offsets", "--group", "billing", "--topic", "orders", "--to-latest", "--execute"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(committed(&cluster).await, vec![(0, 5), (1, 5)]);
    let r = groups(vec![
        "--reset-offsets",
        "--group",
        "billing",
        "--topic",
        "orders",
        "--to-datetime",
        "2000-01-01T00:00:00.000",
        "--execute",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(committed(&cluster).await, vec![(0, 0), (1, 0)], "every record is newer than 2000");
    // Without --execute or --dry-run: a dry run with Kafka's warning.
    let r = groups(vec!["--reset-offsets", "--group", "billing", "--topic", "orders", "--to-latest"]).await;
    assert_eq!(r.code, 0);
    assert!(r.stderr.starts_with("WARN: No action will be performed"), "{}", r.stderr);
    assert_eq!(committed(&cluster).await, vec![(0, 0), (1, 0)]);

    let r = groups(vec!["--describe", "--group", "billing"]).await;
    assert!(r.stdout.contains("Consumer group 'billing' has no active members."), "{}", r.stdout);
    let r = groups(vec!["--describe", "--group", "nobody"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("consumer group 'nobody' does not exist"), "{}", r.stderr);
    let r = groups(vec!["--delete", "--group", "billing"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "Deletion of requested consumer groups ('billing') was successful.\n"));
    let r = groups(vec!["--delete", "--group", "billing"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("GROUP_ID_NOT_FOUND"), "{}", r.stderr);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_perf_progress_goes_to_stderr_and_leaves_the_result_line_alone() {
    let cluster = cluster().await;
    let b = cluster.bootstrap_servers();
    let r = run(
        "kafka-perf",
        &[
            "produce",
            "--bootstrap-server",
            &b,
            "--topic",
            "perf",
            "--num-records",
            "20000",
            "--record-size",
            "50",
            "--partitions",
            "2",
            "--progress",
        ],
        "",
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[1].starts_with("RESULT client=kafka-sdk mode=produce records=20000 "), "{}", lines[1]);
    assert!(!r.stdout.contains('\r') && !r.stdout.contains('#'));
    assert!(r.stderr.contains(" records ") && r.stderr.contains('\r'), "{:?}", r.stderr);
    // Without --progress and with stderr not a terminal: no bar.
    let r = run(
        "kafka-perf",
        &["produce", "--bootstrap-server", &b, "--topic", "perf", "--num-records", "1000", "--record-size", "50"],
        "",
    )
    .await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_tools_carry_headers_and_gzip_by_default() {
    let cluster = cluster().await;
    cluster.create_topic("h", 1, 1).await.unwrap();
    let b = cluster.bootstrap_servers();
    let r = run(
        "kafka-console-producer",
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            "h",
            "--property",
            "parse.headers=true",
            "--property",
            "parse.key=true",
            "--compression-codec",
        ],
        "trace:1,empty:\tk1\tv1\n\tk2\tv2\n",
    )
    .await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = run(
        "kafka-console-consumer",
        &[
            "--bootstrap-server",
            &b,
            "--topic",
            "h",
            "--from-beginning",
            "--max-messages",
            "2",
            "--property",
            "print.headers=true",
            "--property",
            "print.key=true",
        ],
        "",
    )
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "trace:1,empty:\tk1\tv1\nNO_HEADERS\tk2\tv2\n"), "{}", r.stderr);
    cluster.shutdown().await;
}
