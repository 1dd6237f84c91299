//! `kafka-consumer-groups`: list, describe, reset offsets of and delete consumer groups, with
//! the flags and output of Kafka's `kafka-consumer-groups.sh`.
//!
//! ```text
//! kafka-consumer-groups --bootstrap-server localhost:9092 --describe --group billing
//! kafka-consumer-groups --bootstrap-server localhost:9092 --reset-offsets --group billing \
//!     --topic orders --to-earliest --execute
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use kafka_admin::{AdminClient, AdminConfig, GroupDescription, OffsetAndMetadata, OffsetSpec, TopicPartition};
use kafka_examples::cli::{self, switch, value, Args, Flag, ParseError};

const TOOL: &str = "kafka-consumer-groups";

const USAGE: &str = "\
kafka-consumer-groups: list, describe, reset and delete consumer groups.

USAGE:
    kafka-consumer-groups --bootstrap-server HOST:PORT --list [--state]
    kafka-consumer-groups --bootstrap-server HOST:PORT --describe (--group G | --all-groups)
                          [--members | --state | --offsets]
    kafka-consumer-groups --bootstrap-server HOST:PORT --reset-offsets --group G
                          (--topic T[:P,P...] | --all-topics)
                          (--to-earliest | --to-latest | --to-current | --to-offset N |
                           --shift-by N | --to-datetime YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM])
                          [--dry-run | --execute]
    kafka-consumer-groups --bootstrap-server HOST:PORT --delete --group G [--group G...]
    kafka-consumer-groups --bootstrap-server HOST:PORT --delete-offsets --group G --topic T[:P,P...]

OPTIONS:
    --group G                 a group id (repeatable with --delete and --describe)
    --all-groups              every group (--describe)
    --dry-run                 show the new offsets without changing anything (the default)
    --execute                 change the offsets (the group must have no active members)
    --to-datetime T           the first offset at or after T (UTC when no zone is given)
    --timeout MS              how long each call may take, retries included (default 60000)
    --command-config FILE     admin client properties (Java names)
    --command-property K=V    one admin client property (repeatable; this tool's own)
    -h, --help                this text

Exit codes: 0 done, 1 the command failed, 2 bad usage.
";

const FLAGS: &[Flag] = &[
    value("--bootstrap-server"),
    switch("--list"),
    switch("--describe"),
    switch("--reset-offsets"),
    switch("--delete"),
    switch("--delete-offsets"),
    value("--group"),
    switch("--all-groups"),
    value("--topic"),
    switch("--all-topics"),
    switch("--members"),
    switch("--state"),
    switch("--offsets"),
    switch("--verbose"),
    switch("--to-earliest"),
    switch("--to-latest"),
    switch("--to-current"),
    value("--to-offset"),
    value("--shift-by"),
    value("--to-datetime"),
    switch("--dry-run"),
    switch("--execute"),
    value("--command-config"),
    value("--command-property"),
    value("--timeout"),
];

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

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1), FLAGS) {
        Ok(a) => a,
        Err(ParseError::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Usage(m)) => return cli::usage_error(TOOL, &m, USAGE),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return cli::fail(TOOL, e),
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => cli::usage_error(TOOL, &m, USAGE),
        Err(Failure::Error(m)) => cli::fail(TOOL, m),
    }
}

async fn run(args: &Args) -> Result<(), Failure> {
    let actions: Vec<&str> = ["--list", "--describe", "--reset-offsets", "--delete", "--delete-offsets"]
        .into_iter()
        .filter(|a| args.has(a))
        .collect();
    let action = match actions.as_slice() {
        [one] => *one,
        [] => {
            return Err(Failure::Usage(
                "one of --list, --describe, --reset-offsets, --delete or --delete-offsets is required".to_owned(),
            ))
        }
        _ => return Err(Failure::Usage(format!("only one of {} can be given", actions.join(", ")))),
    };
    let bootstrap = args.required("--bootstrap-server")?;
    let mut config = AdminConfig::new(bootstrap);
    let mut properties = Vec::new();
    if let Some(path) = args.get("--command-config") {
        properties.extend(cli::read_properties(path).map_err(Failure::Error)?);
    }
    if let Some(ms) = args.get("--timeout") {
        properties.push(("default.api.timeout.ms".to_owned(), ms.to_owned()));
    }
    properties.extend(args.pairs("--command-property")?);
    for (k, v) in &properties {
        config = config.set(k, v)?;
    }
    let admin = AdminClient::new(config)?;
    let outcome = match action {
        "--list" => list(&admin, args).await,
        "--describe" => describe(&admin, args).await,
        "--reset-offsets" => reset(&admin, args).await,
        "--delete" => delete(&admin, args).await,
        _ => delete_offsets(&admin, args).await,
    };
    admin.close();
    outcome
}

async fn list(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let groups = admin.list_consumer_groups().await?;
    if args.has("--state") {
        let mut rows = vec![vec!["GROUP".to_owned(), "STATE".to_owned()]];
        rows.extend(groups.into_iter().map(|g| vec![g.group_id, g.state.unwrap_or_else(|| "Unknown".to_owned())]));
        for line in cli::columns(&rows) {
            println!("{line}");
        }
    } else {
        for g in groups {
            println!("{}", g.group_id);
        }
    }
    Ok(())
}

fn dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

async fn describe(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let groups: Vec<String> = if args.has("--all-groups") {
        admin.list_consumer_groups().await?.into_iter().map(|g| g.group_id).collect()
    } else if args.has("--group") {
        args.all("--group").to_vec()
    } else {
        return Err(Failure::Usage("--describe needs --group or --all-groups".to_owned()));
    };
    let described = admin.describe_consumer_groups(&groups).await?;
    let mut errors = Vec::new();
    for group in &groups {
        let d = match described.get(group) {
            Some(Ok(d)) if d.state != "Dead" => d,
            Some(Ok(_)) | None => {
                errors.push(format!("consumer group '{group}' does not exist"));
                continue;
            }
            Some(Err(e)) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if args.has("--state") {
            let brokers = admin.describe_cluster().await.map(|c| c.brokers).unwrap_or_default();
            let coordinator = match brokers.iter().find(|b| b.node_id == d.coordinator) {
                Some(b) => format!("{}:{} ({})", b.host, b.port, b.node_id),
                None => format!("({})", d.coordinator),
            };
            let rows = vec![
                ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"].map(String::from).to_vec(),
                vec![group.clone(), coordinator, d.protocol.clone(), d.state.clone(), d.members.len().to_string()],
            ];
            println!();
            for line in cli::columns(&rows) {
                println!("{line}");
            }
            continue;
        }
        if d.members.is_empty() {
            println!("\nConsumer group '{group}' has no active members.");
        } else if d.state.ends_with("Rebalance") || d.state == "Assigning" || d.state == "Reconciling" {
            println!("\nWarning: Consumer group '{group}' is rebalancing.");
        }
        if args.has("--members") {
            let mut rows =
                vec![["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"].map(String::from).to_vec()];
            for m in &d.members {
                rows.push(vec![
                    group.clone(),
                    m.member_id.clone(),
                    m.host.clone(),
                    m.client_id.clone(),
                    m.assignment.len().to_string(),
                ]);
            }
            println!();
            for line in cli::columns(&rows) {
                println!("{line}");
            }
            continue;
        }
        describe_offsets(admin, group, d).await?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(errors.join("; ")))
    }
}

/// The offsets table: every partition with a committed offset or an owner.
async fn describe_offsets(admin: &AdminClient, group: &str, d: &GroupDescription) -> Result<(), Failure> {
    let committed = admin.list_consumer_group_offsets(group, None).await?;
    let mut owners: BTreeMap<TopicPartition, (String, String, String)> = BTreeMap::new();
    for m in &d.members {
        for tp in &m.assignment {
            owners.insert(tp.clone(), (m.member_id.clone(), m.host.clone(), m.client_id.clone()));
        }
    }
    let partitions: BTreeSet<TopicPartition> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends =
        admin.list_offsets(partitions.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect(), false).await?;
    let mut rows = vec![[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    .map(String::from)
    .to_vec()];
    for tp in &partitions {
        let current = committed.get(tp).and_then(|r| r.as_ref().ok()).and_then(|o| o.as_ref()).map(|o| o.offset);
        let end = ends.get(tp).and_then(|r| r.as_ref().ok()).map(|o| o.offset);
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        let (member, host, client) = owners.get(tp).cloned().unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        rows.push(vec![
            group.to_owned(),
            tp.topic.clone(),
            tp.partition.to_string(),
            dash(current),
            dash(end),
            dash(lag),
            member,
            host,
            client,
        ]);
    }
    // Members without partitions are listed too, as Kafka does.
    for m in d.members.iter().filter(|m| m.assignment.is_empty()) {
        rows.push(vec![
            group.to_owned(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            m.member_id.clone(),
            m.host.clone(),
            m.client_id.clone(),
        ]);
    }
    println!();
    for line in cli::columns(&rows) {
        println!("{line}");
    }
    Ok(())
}

/// A topic and, optionally, some of its partitions.
type TopicArg = (String, Option<Vec<i32>>);

/// `--topic t` or `--topic t:0,2`, repeatable.
fn topic_args(args: &Args) -> Result<Vec<TopicArg>, Failure> {
    args.all("--topic")
        .iter()
        .map(|t| match t.split_once(':') {
            None => Ok((t.clone(), None)),
            Some((name, parts)) => {
                let parts = parts
                    .split(',')
                    .map(|p| p.trim().parse().map_err(|_| Failure::Usage(format!("--topic {t}: bad partition `{p}`"))))
                    .collect::<Result<Vec<i32>, _>>()?;
                Ok((name.to_owned(), Some(parts)))
            }
        })
        .collect()
}

/// The partitions `--topic` / `--all-topics` name.
async fn target_partitions(admin: &AdminClient, args: &Args, group: &str) -> Result<Vec<TopicPartition>, Failure> {
    if args.has("--all-topics") {
        return Ok(admin.list_consumer_group_offsets(group, None).await?.into_keys().collect());
    }
    let topics = topic_args(args)?;
    if topics.is_empty() {
        return Err(Failure::Usage("--topic or --all-topics is required".to_owned()));
    }
    let whole: Vec<&str> = topics.iter().filter(|(_, p)| p.is_none()).map(|(t, _)| t.as_str()).collect();
    let described = if whole.is_empty() { BTreeMap::new() } else { admin.describe_topics(&whole).await? };
    let mut out = Vec::new();
    for (topic, parts) in topics {
        match parts {
            Some(parts) => out.extend(parts.into_iter().map(|p| TopicPartition::new(topic.clone(), p))),
            None => match described.get(&topic) {
                Some(Ok(d)) => out.extend(d.partitions.iter().map(|p| TopicPartition::new(topic.clone(), p.partition))),
                Some(Err(e)) => return Err(Failure::Error(e.to_string())),
                None => return Err(Failure::Error(format!("topic {topic}: not found"))),
            },
        }
    }
    Ok(out)
}

async fn offsets_of(
    admin: &AdminClient,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<BTreeMap<TopicPartition, i64>, Failure> {
    let found = admin.list_offsets(partitions.iter().map(|tp| (tp.clone(), spec)).collect(), false).await?;
    found.into_iter().map(|(tp, r)| r.map(|o| (tp, o.offset)).map_err(|e| Failure::Error(e.to_string()))).collect()
}

async fn reset(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let group = args.required("--group")?.to_owned();
    let specs: Vec<&str> =
        ["--to-earliest", "--to-latest", "--to-current", "--to-offset", "--shift-by", "--to-datetime"]
            .into_iter()
            .filter(|s| args.has(s))
            .collect();
    let spec = match specs.as_slice() {
        [one] => *one,
        [] => return Err(Failure::Usage("--reset-offsets needs one reset specification (--to-earliest, ...)".into())),
        _ => return Err(Failure::Usage(format!("only one of {} can be given", specs.join(", ")))),
    };
    if args.has("--dry-run") && args.has("--execute") {
        return Err(Failure::Usage("--dry-run and --execute cannot be given together".to_owned()));
    }
    let execute = args.has("--execute");
    if !execute && !args.has("--dry-run") {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. In a future major release, the \
             default behavior of this command will be to prompt the user before executing the reset rather than doing \
             a dry run. You should add the --dry-run option explicitly if you are scripting this command and want to \
             keep the current default behavior without prompting."
        );
    }
    let to_offset = args.number::<i64>("--to-offset")?;
    let shift = args.number::<i64>("--shift-by")?;
    let datetime = args.get("--to-datetime").map(parse_datetime).transpose()?;

    let described = admin.describe_consumer_groups([&group]).await?;
    match described.get(&group) {
        Some(Ok(d)) if d.state == "Empty" || d.state == "Dead" => {}
        Some(Ok(d)) => {
            return Err(Failure::Error(format!(
                "assignments can only be reset if the group '{group}' is inactive, but the current state is {}",
                d.state
            )))
        }
        Some(Err(e)) => return Err(Failure::Error(e.to_string())),
        None => return Err(Failure::Error(format!("group {group}: no answer"))),
    }
    let partitions = target_partitions(admin, args, &group).await?;
    let earliest = offsets_of(admin, &partitions, OffsetSpec::Earliest).await?;
    let latest = offsets_of(admin, &partitions, OffsetSpec::Latest).await?;
    let committed = admin.list_consumer_group_offsets(&group, Some(&partitions)).await?;
    let clamp = |tp: &TopicPartition, o: i64| {
        let lo = earliest.get(tp).copied().unwrap_or(0);
        let hi = latest.get(tp).copied().unwrap_or(o);
        o.clamp(lo, hi.max(lo))
    };
    let current = |tp: &TopicPartition| -> Option<i64> {
        committed.get(tp).and_then(|r| r.as_ref().ok()).and_then(|o| o.as_ref()).map(|o| o.offset)
    };
    let by_time = match datetime {
        Some(ts) => Some(offsets_of(admin, &partitions, OffsetSpec::Timestamp(ts)).await?),
        None => None,
    };
    let mut new_offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    for tp in &partitions {
        let offset = match spec {
            "--to-earliest" => earliest.get(tp).copied().unwrap_or(0),
            "--to-latest" => latest.get(tp).copied().unwrap_or(0),
            "--to-current" => current(tp).unwrap_or_else(|| latest.get(tp).copied().unwrap_or(0)),
            "--to-offset" => clamp(tp, to_offset.unwrap_or(0)),
            "--shift-by" => clamp(tp, current(tp).unwrap_or(0).saturating_add(shift.unwrap_or(0))),
            _ => match by_time.as_ref().and_then(|m| m.get(tp)).copied() {
                Some(o) if o >= 0 => o,
                _ => latest.get(tp).copied().unwrap_or(0),
            },
        };
        new_offsets.insert(tp.clone(), OffsetAndMetadata::new(offset));
    }
    if execute {
        let results = admin.alter_consumer_group_offsets(&group, new_offsets.clone()).await?;
        let errors: Vec<String> = results.values().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
        if !errors.is_empty() {
            return Err(Failure::Error(errors.join("; ")));
        }
    }
    println!("\n{:<30} {:<30} {:<10} {:<15}", "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (tp, o) in &new_offsets {
        println!("{:<30} {:<30} {:<10} {:<15}", group, tp.topic, tp.partition, o.offset);
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM|-HH:MM]` to milliseconds since the epoch (UTC when
/// no zone is given).
fn parse_datetime(text: &str) -> Result<i64, Failure> {
    let bad = || Failure::Usage(format!("--to-datetime {text}: expected YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM]"));
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, mo, da) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None) => (y, m, d),
        _ => return Err(bad()),
    };
    let (time, offset_ms) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|i| *i >= 8) {
        let (t, zone) = rest.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = zone.get(1..).unwrap_or("").replace(':', "");
        let hh: i64 = zone.get(..2).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let mm: i64 = zone.get(2..).filter(|s| !s.is_empty()).map_or(Some(0), |s| s.parse().ok()).ok_or_else(bad)?;
        (t, sign * (hh * 3600 + mm * 60) * 1000)
    } else {
        (rest, 0)
    };
    let (hms, millis) = match time.split_once('.') {
        Some((hms, ms)) => (hms, format!("{ms:0<3}").get(..3).and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)?),
        None => (time, 0),
    };
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = match (t.next(), t.next(), t.next(), t.next()) {
        (Some(Ok(h)), Some(Ok(m)), Some(Ok(s)), None) => (h, m, s),
        (Some(Ok(h)), Some(Ok(m)), None, None) => (h, m, 0),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3600 + mi * 60 + s) * 1000 + millis) - offset_ms)
}

async fn delete(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let groups = args.all("--group");
    if groups.is_empty() {
        return Err(Failure::Usage("--delete needs --group".to_owned()));
    }
    let results = admin.delete_consumer_groups(groups).await?;
    let failed: Vec<(&String, &kafka_admin::Error)> =
        results.iter().filter_map(|(g, r)| r.as_ref().err().map(|e| (g, e))).collect();
    let ok: Vec<String> = results.iter().filter(|(_, r)| r.is_ok()).map(|(g, _)| format!("'{g}'")).collect();
    if failed.is_empty() {
        println!("Deletion of requested consumer groups ({}) was successful.", ok.join(", "));
        return Ok(());
    }
    if !ok.is_empty() {
        println!("These consumer groups were deleted successfully: {}", ok.join(", "));
    }
    Err(Failure::Error(format!(
        "deletion of some consumer groups failed: {}",
        failed
            .iter()
            .map(|(g, e)| format!("group '{g}' could not be deleted due to: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

async fn delete_offsets(admin: &AdminClient, args: &Args) -> Result<(), Failure> {
    let group = args.required("--group")?.to_owned();
    let partitions = target_partitions(admin, args, &group).await?;
    let results = admin.delete_consumer_group_offsets(&group, &partitions).await?;
    let mut rows = vec![["TOPIC", "PARTITION", "STATUS"].map(String::from).to_vec()];
    let mut failed = false;
    for (tp, r) in &results {
        let status = match r {
            Ok(()) => "Successful".to_owned(),
            Err(e) => {
                failed = true;
                format!("Error: {}", e.code().map_or_else(|| e.to_string(), |c| c.name().to_owned()))
            }
        };
        rows.push(vec![tp.topic.clone(), tp.partition.to_string(), status]);
    }
    println!(
        "{}",
        if failed { "Request failed for some partitions:" } else { "Request succeed for deleting offsets." }
    );
    println!();
    for line in cli::columns(&rows) {
        println!("{line}");
    }
    if failed {
        Err(Failure::Error(format!("deleting offsets of group {group} failed for some partitions")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00").ok(), Some(0));
        assert_eq!(parse_datetime("2024-02-29T12:34:56.789Z").ok(), Some(1_709_210_096_789));
        assert_eq!(parse_datetime("2024-02-29T13:34:56.789+01:00").ok(), Some(1_709_210_096_789));
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }
}
