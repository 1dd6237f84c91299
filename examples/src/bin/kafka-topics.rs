//! `kafka-topics`: create, list, describe, alter and delete topics, with the flags and output
//! of Kafka's `kafka-topics.sh`.
//!
//! ```text
//! kafka-topics --bootstrap-server localhost:9092 --create --topic orders --partitions 3 --replication-factor 3
//! kafka-topics --bootstrap-server localhost:9092 --describe --topic orders
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;

use kafka_admin::{AdminClient, AdminConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic, TopicDescription};
use kafka_examples::cli::{self, switch, value, Args, Flag, ParseError};
use kafka_protocol::ErrorCode;

const TOOL: &str = "kafka-topics";

const USAGE: &str = "\
kafka-topics: create, list, describe, alter and delete topics.

USAGE:
    kafka-topics --bootstrap-server HOST:PORT --create --topic T [--partitions N] [--replication-factor R]
                 [--replica-assignment 1:2,2:3] [--config K=V]... [--if-not-exists]
    kafka-topics --bootstrap-server HOST:PORT --list [--topic REGEX] [--exclude-internal]
    kafka-topics --bootstrap-server HOST:PORT --describe [--topic REGEX] [--exclude-internal]
                 [--under-replicated-partitions] [--unavailable-partitions]
    kafka-topics --bootstrap-server HOST:PORT --alter --topic T --partitions N [--if-exists]
    kafka-topics --bootstrap-server HOST:PORT --delete --topic REGEX [--if-exists]

OPTIONS:
    --bootstrap-server HOST:PORT   the cluster (comma-separated list)
    --topic T                      a topic name; with --list, --describe, --alter and --delete a
                                   regular expression matched against the whole name
    --partitions N                 partitions to create, or the new total with --alter
    --replication-factor R         replicas per partition (--create)
    --replica-assignment LIST      explicit replicas: partitions separated by commas, replicas
                                   of a partition by colons (preferred leader first)
    --config K=V                   a topic config on --create (repeatable)
    --if-not-exists / --if-exists  no error when the topic exists / does not exist
    --exclude-internal             leave internal topics out of --list and --describe
    --command-config FILE          admin client properties (Java names)
    --command-property K=V         one admin client property (repeatable; this tool's own)
    -h, --help                     this text

Exit codes: 0 done, 1 the command failed, 2 bad usage.
";

const FLAGS: &[Flag] = &[
    value("--bootstrap-server"),
    switch("--create"),
    switch("--list"),
    switch("--describe"),
    switch("--alter"),
    switch("--delete"),
    value("--topic"),
    value("--partitions"),
    value("--replication-factor"),
    value("--replica-assignment"),
    value("--config"),
    switch("--if-not-exists"),
    switch("--if-exists"),
    switch("--exclude-internal"),
    switch("--under-replicated-partitions"),
    switch("--unavailable-partitions"),
    value("--command-config"),
    value("--command-property"),
];

enum Action {
    Create,
    List,
    Describe,
    Alter,
    Delete,
}

fn action(args: &Args) -> Result<Action, ParseError> {
    let given: Vec<&str> =
        ["--create", "--list", "--describe", "--alter", "--delete"].into_iter().filter(|a| args.has(a)).collect();
    match given.as_slice() {
        ["--create"] => Ok(Action::Create),
        ["--list"] => Ok(Action::List),
        ["--describe"] => Ok(Action::Describe),
        ["--alter"] => Ok(Action::Alter),
        ["--delete"] => Ok(Action::Delete),
        [] => Err(ParseError::Usage("one of --create, --list, --describe, --alter or --delete is required".to_owned())),
        _ => Err(ParseError::Usage(format!("only one of {} can be given", given.join(", ")))),
    }
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
    let (action, bootstrap) = match action(&args).and_then(|a| Ok((a, args.required("--bootstrap-server")?))) {
        Ok(x) => x,
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
        Err(ParseError::Help) => return ExitCode::SUCCESS,
    };
    let mut config = AdminConfig::new(bootstrap);
    let mut properties = Vec::new();
    if let Some(path) = args.get("--command-config") {
        match cli::read_properties(path) {
            Ok(p) => properties.extend(p),
            Err(e) => return cli::fail(TOOL, e),
        }
    }
    match args.pairs("--command-property") {
        Ok(p) => properties.extend(p),
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
        Err(ParseError::Help) => return ExitCode::SUCCESS,
    }
    for (k, v) in &properties {
        config = match config.set(k, v) {
            Ok(c) => c,
            Err(e) => return cli::fail(TOOL, e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(TOOL, e),
    };
    runtime.block_on(async {
        let admin = match AdminClient::new(config) {
            Ok(a) => a,
            Err(e) => return cli::fail(TOOL, e),
        };
        let outcome = match action {
            Action::Create => create(&admin, &args).await,
            Action::List => list(&admin, &args).await,
            Action::Describe => describe(&admin, &args).await,
            Action::Alter => alter(&admin, &args).await,
            Action::Delete => delete(&admin, &args).await,
        };
        admin.close();
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Usage(m)) => cli::usage_error(TOOL, &m, USAGE),
            Err(Failure::Error(m)) => cli::fail(TOOL, m),
        }
    })
}

enum Failure {
    Usage(String),
    Error(String),
}

impl From<kafka_admin::Error> for Failure {
    fn from(e: kafka_admin::Error) -> Self {
        Failure::Error(e.to_string())
    }
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Usage(m) => Failure::Usage(m),
            ParseError::Help => Failure::Usage(String::new()),
        }
    }
}

fn parse_assignment(text: &str) -> Result<Vec<Vec<i32>>, Failure> {
    text.split(',')
        .map(|p| {
            p.split(':')
                .map(|b| {
                    b.trim()
                        .parse()
                        .map_err(|_| Failure::Usage(format!("--replica-assignment: `{b}` is not a broker id")))
                })
                .collect()
        })
        .collect()
}

async fn create(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let name = args.required("--topic")?;
    let mut topic = match args.get("--replica-assignment") {
        Some(a) => {
            if args.has("--partitions") || args.has("--replication-factor") {
                return Err(Failure::Usage(
                    "--replica-assignment cannot be combined with --partitions or --replication-factor".to_owned(),
                ));
            }
            NewTopic::with_assignment(name, parse_assignment(a)?)
        }
        None => NewTopic {
            num_partitions: args.number("--partitions")?,
            replication_factor: args.number("--replication-factor")?,
            ..NewTopic::with_defaults(name)
        },
    };
    for (k, v) in args.pairs("--config")? {
        topic = topic.config(k, v);
    }
    let results = admin.create_topics([topic], false).await?;
    match results.get(name) {
        Some(Ok(_)) => {
            println!("Created topic {name}.");
            Ok(())
        }
        Some(Err(e)) if e.code() == Some(ErrorCode::TopicAlreadyExists) && args.has("--if-not-exists") => Ok(()),
        Some(Err(e)) => Err(Failure::Error(e.to_string())),
        None => Err(Failure::Error(format!("topic {name}: no result"))),
    }
}

/// The topics `--topic` names: an exact name, else the names the regular expression matches
/// in full. Without `--topic`, every topic.
async fn matching_topics(admin: &AdminClient, args: &Args) -> Result<Vec<String>, Failure> {
    let topics = admin.list_topics(!args.has("--exclude-internal")).await?;
    let names: Vec<String> = topics.into_iter().map(|t| t.name).collect();
    let Some(pattern) = args.get("--topic") else { return Ok(names) };
    if names.iter().any(|n| n == pattern) {
        return Ok(vec![pattern.to_owned()]);
    }
    let re = regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| Failure::Usage(format!("--topic: not a valid regular expression: {e}")))?;
    Ok(names.into_iter().filter(|n| re.is_match(n)).collect())
}

fn none_matched(args: &Args) -> Result<(), Failure> {
    match args.get("--topic") {
        Some(t) if !args.has("--if-exists") => Err(Failure::Error(format!("topic '{t}' does not exist as expected"))),
        _ => Ok(()),
    }
}

async fn list(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    for name in matching_topics(admin, args).await? {
        println!("{name}");
    }
    Ok(())
}

fn ids(v: &[i32]) -> String {
    v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

async fn describe(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let names = matching_topics(admin, args).await?;
    if names.is_empty() {
        return none_matched(args);
    }
    let described = admin.describe_topics(&names).await?;
    let configs = admin.describe_configs(names.iter().map(ConfigResource::topic), false).await?;
    let only_partitions = args.has("--under-replicated-partitions") || args.has("--unavailable-partitions");
    let mut failed = Vec::new();
    for name in &names {
        let d: &TopicDescription = match described.get(name) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                failed.push(e.to_string());
                continue;
            }
            None => continue,
        };
        let rf = d.partitions.first().map_or(0, |p| p.replicas.len());
        if !only_partitions {
            let dynamic: Vec<String> = match configs.get(&ConfigResource::topic(name)) {
                Some(Ok(entries)) => entries
                    .iter()
                    .filter(|c| c.source == ConfigSource::DynamicTopic)
                    .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
                    .collect(),
                _ => Vec::new(),
            };
            println!(
                "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
                d.topic_id,
                d.partitions.len(),
                dynamic.join(",")
            );
        }
        for p in &d.partitions {
            let under = p.isr.len() < p.replicas.len();
            let unavailable = p.leader.is_none();
            if (args.has("--under-replicated-partitions") && !under)
                || (args.has("--unavailable-partitions") && !unavailable)
            {
                continue;
            }
            let mut line = format!(
                "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                p.partition,
                p.leader.map_or("none".to_owned(), |l| l.to_string()),
                ids(&p.replicas),
                ids(&p.isr)
            );
            if !p.offline_replicas.is_empty() {
                line.push_str(&format!("\tOffline: {}", ids(&p.offline_replicas)));
            }
            println!("{line}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(failed.join("; ")))
    }
}

async fn alter(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    args.required("--topic")?;
    let Some(count) = args.number::<i32>("--partitions")? else {
        return Err(Failure::Usage("--alter needs --partitions (use kafka-configs for configs)".to_owned()));
    };
    if args.has("--replication-factor") {
        return Err(Failure::Usage("--replication-factor cannot be changed with --alter".to_owned()));
    }
    let names = matching_topics(admin, args).await?;
    if names.is_empty() {
        return none_matched(args);
    }
    let assignments = args.get("--replica-assignment").map(parse_assignment).transpose()?;
    let wanted: BTreeMap<String, NewPartitions> = names
        .iter()
        .map(|n| (n.clone(), NewPartitions { total_count: count, assignments: assignments.clone() }))
        .collect();
    let results = admin.create_partitions(wanted).await?;
    let errors: Vec<String> = results.values().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(errors.join("; ")))
    }
}

async fn delete(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    args.required("--topic")?;
    let names = matching_topics(admin, args).await?;
    if names.is_empty() {
        return none_matched(args);
    }
    let results = admin.delete_topics(&names).await?;
    let errors: Vec<String> = results.values().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(errors.join("; ")))
    }
}
