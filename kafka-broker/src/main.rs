//! `kafka-broker`: the bundled in-memory Kafka cluster as a process, for clients in any
//! language. `kafka-broker --help` lists the flags.

use std::process::ExitCode;

use kafka_broker::Cluster;

const USAGE: &str = "\
kafka-broker: an in-memory Kafka cluster speaking the real wire protocol (for tests)

USAGE:
    kafka-broker [OPTIONS]

OPTIONS:
    --listen HOST:PORT     first broker's address; broker n listens on PORT+n-1
                           (default 127.0.0.1:9092; port 0 picks free ports)
    --brokers N            number of brokers, node ids 1..=N (default 1)
    --partitions N         partitions of auto-created topics, Kafka's num.partitions (default 3)
    --auto-create BOOL     create topics on Metadata requests, Kafka's
                           auto.create.topics.enable (default true)
    --config KEY=VALUE     a broker setting by Kafka's name (repeatable), e.g.
                           --config log.retention.ms=60000
    --cluster-id ID        the cluster id reported in Metadata
    --log-level LEVEL      error, warn, info, debug or trace (default info; RUST_LOG overrides)
    -h, --help             this text

Prints one line per listening broker, then serves until Ctrl-C or SIGTERM.";

struct Args {
    host: String,
    port: u16,
    brokers: usize,
    partitions: i32,
    auto_create: bool,
    configs: Vec<(String, String)>,
    cluster_id: Option<String>,
    log_level: String,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 9092,
        brokers: 1,
        partitions: 3,
        auto_create: true,
        configs: Vec::new(),
        cluster_id: None,
        log_level: "info".into(),
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                let v = value("--listen")?;
                let (host, port) = v.rsplit_once(':').ok_or_else(|| format!("--listen {v}: expected HOST:PORT"))?;
                a.host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                a.port = port.parse().map_err(|_| format!("--listen {v}: bad port"))?;
            }
            "--brokers" => {
                a.brokers = value("--brokers")?.parse().map_err(|_| "--brokers: expected a number")?;
                if a.brokers == 0 {
                    return Err("--brokers: at least 1".into());
                }
            }
            "--partitions" => {
                a.partitions = value("--partitions")?.parse().map_err(|_| "--partitions: expected a number")?;
                if a.partitions < 1 {
                    return Err("--partitions: at least 1".into());
                }
            }
            "--auto-create" => {
                a.auto_create = match value("--auto-create")?.as_str() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("--auto-create {other}: expected true or false")),
                }
            }
            "--config" => {
                let v = value("--config")?;
                let (k, val) = v.split_once('=').ok_or_else(|| format!("--config {v}: expected KEY=VALUE"))?;
                a.configs.push((k.to_string(), val.to_string()));
            }
            "--cluster-id" => a.cluster_id = Some(value("--cluster-id")?),
            "--log-level" => a.log_level = value("--log-level")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(a))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kafka-broker: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("kafka_broker={}", args.log_level)));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut builder = Cluster::builder()
        .brokers(args.brokers)
        .host(args.host.clone())
        .default_partitions(args.partitions)
        .auto_create_topics(args.auto_create);
    if args.port != 0 {
        let ports: Result<Vec<u16>, _> = (0..args.brokers).map(|i| u16::try_from(usize::from(args.port) + i)).collect();
        match ports {
            Ok(p) => builder = builder.ports(p),
            Err(_) => {
                eprintln!("kafka-broker: ports from {} for {} brokers run past 65535", args.port, args.brokers);
                return ExitCode::from(2);
            }
        }
    }
    if let Some(id) = args.cluster_id {
        builder = builder.cluster_id(id);
    }
    for (k, v) in args.configs {
        builder = builder.broker_config(k, v);
    }
    let cluster = match builder.start().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (node_id, addr) in cluster.broker_addrs() {
        println!("broker {node_id} listening on {addr}");
    }
    println!("bootstrap.servers={}", cluster.bootstrap_servers());

    wait_for_signal().await;
    eprintln!("kafka-broker: shutting down");
    cluster.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
