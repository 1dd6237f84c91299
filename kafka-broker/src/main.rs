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
    --security-protocol P  PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL for every listener
    --sasl-user NAME:PASSWORD:MECHANISM
                           a SASL user (repeatable); MECHANISM is PLAIN, SCRAM-SHA-256 or
                           SCRAM-SHA-512; e.g. --sasl-user alice:alice-secret:SCRAM-SHA-512
    --sasl-oauthbearer-unsecured-test-validator
                           FOR TESTS ONLY: accept unsigned JWTs over OAUTHBEARER
    --tls-cert PEM --tls-key PEM
                           the TLS listeners' certificate chain and private key files
    --tls-generate-ca PATH generate a test CA and a listener certificate (for the --listen host,
                           localhost, 127.0.0.1, ::1) at start; write the CA certificate to PATH
                           for clients to trust (ssl.ca.location). The default for TLS listeners
                           without --tls-cert (then the CA is not written anywhere)
    --tls-client-auth      require client certificates from the generated CA (mTLS)
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
    security_protocol: kafka_broker::security::SecurityProtocol,
    sasl_users: Vec<(String, String, kafka_broker::security::SaslMechanism)>,
    oauth_test_validator: bool,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca_out: Option<String>,
    tls_client_auth: bool,
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
        security_protocol: Default::default(),
        sasl_users: Vec::new(),
        oauth_test_validator: false,
        tls_cert: None,
        tls_key: None,
        tls_ca_out: None,
        tls_client_auth: false,
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
            "--security-protocol" => {
                a.security_protocol =
                    value("--security-protocol")?.parse().map_err(|e| format!("--security-protocol {e}"))?
            }
            "--sasl-user" => {
                let v = value("--sasl-user")?;
                // The password may contain ':'; the name and the mechanism may not.
                let (name, rest) = v.split_once(':').ok_or("--sasl-user: expected NAME:PASSWORD:MECHANISM")?;
                let (password, mechanism) =
                    rest.rsplit_once(':').ok_or("--sasl-user: expected NAME:PASSWORD:MECHANISM")?;
                let mechanism = mechanism.parse().map_err(|e| format!("--sasl-user {e}"))?;
                if name.is_empty() {
                    return Err("--sasl-user: empty user name".into());
                }
                a.sasl_users.push((name.to_string(), password.to_string(), mechanism));
            }
            "--sasl-oauthbearer-unsecured-test-validator" => a.oauth_test_validator = true,
            "--tls-cert" => a.tls_cert = Some(value("--tls-cert")?),
            "--tls-key" => a.tls_key = Some(value("--tls-key")?),
            "--tls-generate-ca" => a.tls_ca_out = Some(value("--tls-generate-ca")?),
            "--tls-client-auth" => a.tls_client_auth = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if a.tls_cert.is_some() && a.tls_ca_out.is_some() {
        return Err("--tls-cert and --tls-generate-ca exclude each other".into());
    }
    if (a.tls_cert.is_some() || a.tls_ca_out.is_some()) && !a.security_protocol.uses_tls() {
        return Err("TLS flags need --security-protocol SSL or SASL_SSL".into());
    }
    if !a.sasl_users.is_empty() && !a.security_protocol.uses_sasl() {
        return Err("--sasl-user needs --security-protocol SASL_PLAINTEXT or SASL_SSL".into());
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
    builder = builder.security_protocol(args.security_protocol);
    for (name, password, mechanism) in args.sasl_users {
        builder = builder.sasl_user(name, password, mechanism);
    }
    if args.oauth_test_validator {
        builder = builder.sasl_oauthbearer_unsecured_test_validator();
    }
    if args.tls_client_auth {
        builder = builder.tls_client_auth_required();
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
        match (read(cert), read(key)) {
            (Ok(c), Ok(k)) => builder = builder.tls_identity(c, k),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("kafka-broker: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cluster = match builder.start().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kafka-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, cluster.tls_ca_pem()) {
        if let Err(e) = std::fs::write(path, pem) {
            eprintln!("kafka-broker: cannot write the CA certificate to {path}: {e}");
            cluster.shutdown().await;
            return ExitCode::FAILURE;
        }
        println!("ssl.ca.location={path}");
    }
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
