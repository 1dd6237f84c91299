//! `kafka-compat-check`: tries what this SDK needs from a cluster against a real one and
//! prints one line a check: PASS, SKIP (the broker lacks an API; named) or FAIL (what did not
//! hold). Point it at Apache Kafka, Redpanda or any other broker before relying on the SDK
//! there; CI runs it against the bundled broker.
//!
//! ```text
//! kafka-compat-check --bootstrap-server localhost:9092
//! kafka-compat-check --bootstrap-server broker:9093 --command-config client.properties --only transactions
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kafka_examples::cli::{self, switch, value, Flag, ParseError};
use kafka_examples::compat::{api_table, run_check, Outcome, Settings, CHECKS};

const TOOL: &str = "kafka-compat-check";

const USAGE: &str = "\
kafka-compat-check: checks that a cluster does what this SDK needs, for real: topics, configs,
produce and consume with every codec, offsets, consumer groups (classic and KIP-848),
transactions. Every check makes its own topics and groups (prefixed compat-) and deletes them.

USAGE:
    kafka-compat-check --bootstrap-server HOST:PORT [OPTIONS]

OPTIONS:
    --bootstrap-server HOST:PORT   the cluster (comma-separated list)
    --only NAME[,NAME...]          run only these checks
    --skip NAME[,NAME...]          leave these checks out
    --records N                    records a produce or group check sends (default 2000, at least 8)
    --replication-factor R         of the topics the checks create (default: the broker's)
    --timeout-ms MS                the longest one check may take (default 120000)
    --command-config FILE          connection and security properties (Java names), e.g.
                                   security.protocol, sasl.*, ssl.*, client.id
    --command-property K=V         one such property (repeatable)
    --list                         print the checks' names and exit
    --api-versions                 print every API's version range on the broker and the
                                   version this SDK would use, and exit
    -h, --help                     this text

Exit codes: 0 no check failed (some may be skipped), 1 a check failed, 2 bad usage.
";

const FLAGS: &[Flag] = &[
    value("--bootstrap-server"),
    value("--only"),
    value("--skip"),
    value("--records"),
    value("--replication-factor"),
    value("--timeout-ms"),
    value("--command-config"),
    value("--command-property"),
    switch("--list"),
    switch("--api-versions"),
];

/// The checks chosen by `--only` and `--skip`, or the unknown name given.
fn chosen(only: Option<&str>, skip: Option<&str>) -> Result<Vec<&'static str>, String> {
    let names = |list: Option<&str>| -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for n in list.unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !CHECKS.contains(&n) {
                return Err(format!("no check named `{n}` (--list shows them)"));
            }
            out.push(n.to_owned());
        }
        Ok(out)
    };
    let only = names(only)?;
    let skip = names(skip)?;
    Ok(CHECKS
        .iter()
        .copied()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c))
        .filter(|c| !skip.iter().any(|s| s == c))
        .collect())
}

fn settings(args: &cli::Args) -> Result<Settings, ParseError> {
    let mut s = Settings::new(args.required("--bootstrap-server")?);
    if let Some(path) = args.get("--command-config") {
        s.properties.extend(cli::read_properties(path).map_err(ParseError::Usage)?);
    }
    s.properties.extend(args.pairs("--command-property")?);
    // Connection and security settings only: a group, transactional or producer setting would
    // change what the checks do (two members sharing a group.instance.id fence each other).
    let mut probe = kafka_client::ClientConfig::new(&s.bootstrap);
    for (k, v) in &s.properties {
        match probe.apply(k, v) {
            Ok(true) => {}
            Ok(false) => {
                return Err(ParseError::Usage(format!(
                    "{k}: only connection and security properties can be given (the checks set the rest)"
                )))
            }
            Err(e) => return Err(ParseError::Usage(e.to_string())),
        }
    }
    if let Some(n) = args.number::<usize>("--records")? {
        if n < 8 {
            // The group checks send half of them, spread over four partitions, twice.
            return Err(ParseError::Usage("--records must be at least 8".to_owned()));
        }
        s.records = n;
    }
    s.replication_factor = args.number("--replication-factor")?;
    if let Some(ms) = args.number::<u64>("--timeout-ms")? {
        s.check_timeout = Duration::from_millis(ms);
    }
    Ok(s)
}

fn main() -> ExitCode {
    let args = match cli::Args::parse(std::env::args().skip(1), FLAGS) {
        Ok(a) => a,
        Err(ParseError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
    };
    if args.has("--list") {
        for c in CHECKS {
            println!("{c}");
        }
        return ExitCode::SUCCESS;
    }
    let checks = match chosen(args.get("--only"), args.get("--skip")) {
        Ok(c) => c,
        Err(m) => return cli::usage_error(TOOL, &m, USAGE),
    };
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
        Err(ParseError::Help) => return ExitCode::SUCCESS,
    };
    // The client's own log (RUST_LOG, default: errors only) on stderr, for a check that fails.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned());
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).with_env_filter(filter).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(TOOL, e),
    };
    runtime.block_on(async {
        let mut config = kafka_client::ClientConfig::new(&settings.bootstrap);
        for (k, v) in &settings.properties {
            if let Err(e) = config.apply(k, v) {
                return cli::fail(TOOL, e);
            }
        }
        match cli::probe(&config, Duration::from_secs(10)).await {
            Ok(client) => client.close(),
            Err(e) => return cli::fail(TOOL, e),
        }
        if args.has("--api-versions") {
            return match api_table(&settings).await {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => cli::fail(TOOL, e),
            };
        }
        let width = checks.iter().map(|c| c.len()).max().unwrap_or(0);
        let mut failed = 0;
        for check in &checks {
            let started = Instant::now();
            let outcome = run_check(check, &settings).await;
            if matches!(outcome, Outcome::Fail(_)) {
                failed += 1;
            }
            println!(
                "{check:width$}  {}  {:6.1}s  {}",
                outcome.label(),
                started.elapsed().as_secs_f64(),
                outcome.detail().replace(['\n', '\r'], " ")
            );
        }
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            eprintln!("{TOOL}: {failed} of {} checks failed", checks.len());
            ExitCode::FAILURE
        }
    })
}
