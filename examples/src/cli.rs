//! What the command-line tools share: a small flag parser that takes Kafka's flag names
//! (`--flag value`, `--flag=value`, switches, repeatable flags), properties files, the probe
//! that turns an unreachable cluster into one line, and the exit codes.
//!
//! Exit codes: 0 success, 1 the command failed (the cluster refused, a record was not
//! delivered, the cluster could not be reached), 2 bad usage (an unknown flag, a missing or
//! malformed value; the usage text follows the error).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use kafka_client::{Client, ClientConfig};

/// One flag a tool accepts.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The name, with its dashes (`--topic`).
    pub name: &'static str,
    /// Whether it takes a value.
    pub takes_value: bool,
}

/// A flag that takes a value.
pub const fn value(name: &'static str) -> Flag {
    Flag { name, takes_value: true }
}

/// A switch.
pub const fn switch(name: &'static str) -> Flag {
    Flag { name, takes_value: false }
}

/// Parsed flags: each given flag with its values, in order.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<&'static str, Vec<String>>,
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `--help` or `-h` was given.
    Help,
    /// A usage error, said in one line.
    Usage(String),
}

impl Args {
    /// Parses `args` against `flags`. Flags not in the list, missing values and stray words
    /// are usage errors.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[Flag]) -> Result<Args, ParseError> {
        let mut out = Args::default();
        let mut it = args.into_iter().peekable();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Err(ParseError::Help);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let Some(flag) = flags.iter().find(|f| f.name == name) else {
                return Err(ParseError::Usage(if arg.starts_with('-') {
                    format!("unknown option {name}")
                } else {
                    format!("unexpected argument {arg}")
                }));
            };
            let v = if flag.takes_value {
                match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| ParseError::Usage(format!("{name} needs a value")))?,
                }
            } else if inline.is_some() {
                return Err(ParseError::Usage(format!("{name} takes no value")));
            } else {
                String::new()
            };
            out.values.entry(flag.name).or_default().push(v);
        }
        Ok(out)
    }

    /// Whether the flag was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The flag's last value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The flag's value, required.
    pub fn required(&self, name: &str) -> Result<&str, ParseError> {
        self.get(name).ok_or_else(|| ParseError::Usage(format!("{name} is required")))
    }

    /// The flag's value parsed as a number.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ParseError> {
        self.get(name)
            .map(|v| v.trim().parse().map_err(|_| ParseError::Usage(format!("{name}: `{v}` is not a valid number"))))
            .transpose()
    }

    /// `KEY=VALUE` pairs of a repeatable flag.
    pub fn pairs(&self, name: &str) -> Result<Vec<(String, String)>, ParseError> {
        self.all(name)
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                    .ok_or_else(|| ParseError::Usage(format!("{name} {kv}: expected KEY=VALUE")))
            })
            .collect()
    }
}

/// Reads a Java properties file (`key=value` or `key: value` lines, `#` and `!` comments).
pub fn read_properties(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or_else(|| format!("{path}:{}: expected key=value", i + 1))?;
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}

/// Prints a usage error and the usage text on stderr; exit code 2.
pub fn usage_error(tool: &str, message: &str, usage: &str) -> ExitCode {
    eprintln!("{tool}: {message}\n\n{usage}");
    ExitCode::from(2)
}

/// Prints an error as one line on stderr; exit code 1.
pub fn fail(tool: &str, message: impl std::fmt::Display) -> ExitCode {
    let line = message.to_string().replace(['\n', '\r'], " ");
    eprintln!("{tool}: error: {line}");
    ExitCode::FAILURE
}

/// Connects to any broker of the cluster, retrying until `timeout`: turns an unreachable
/// cluster into one error naming the bootstrap servers, before a tool starts its work.
pub async fn probe(config: &ClientConfig, timeout: Duration) -> Result<Client, String> {
    let client = Client::new(config.clone(), false).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let attempt = match tokio::time::timeout_at(deadline, client.any_connection()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("no connection established".to_owned()),
        };
        match attempt {
            Ok(_) => return Ok(client),
            Err(e) if tokio::time::Instant::now() + Duration::from_millis(100) >= deadline => {
                client.close();
                return Err(format!(
                    "cannot reach the cluster at {} within {} ms: {e}",
                    config.bootstrap_servers.join(","),
                    timeout.as_millis()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Formats rows as left-aligned columns separated by a space, each as wide as its widest
/// cell (Kafka's `kafka-consumer-groups` layout).
pub fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(cell.len()),
                None => widths.push(cell.len()),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let w = widths.get(i).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<w$} "));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[value("--topic"), switch("--list"), value("--config")];

    fn parse(args: &[&str]) -> Result<Args, ParseError> {
        Args::parse(args.iter().map(|s| s.to_string()), FLAGS)
    }

    #[test]
    fn flags_values_and_errors() {
        let a = parse(&["--topic", "t", "--list", "--config=a=b", "--config", "c=d"]).unwrap();
        assert_eq!(a.get("--topic"), Some("t"));
        assert!(a.has("--list"));
        assert_eq!(a.pairs("--config").unwrap(), vec![("a".into(), "b".into()), ("c".into(), "d".into())]);
        assert_eq!(parse(&["--help"]).unwrap_err(), ParseError::Help);
        assert!(matches!(parse(&["--nope"]), Err(ParseError::Usage(m)) if m.contains("--nope")));
        assert!(matches!(parse(&["--topic"]), Err(ParseError::Usage(m)) if m.contains("needs a value")));
        assert!(matches!(parse(&["stray"]), Err(ParseError::Usage(_))));
    }

    #[test]
    fn columns_align() {
        let rows =
            vec![vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()], vec!["aaa".into(), "b".into(), "c".into()]];
        assert_eq!(columns(&rows), vec!["A   BB C", "aaa b  c"]);
    }
}
