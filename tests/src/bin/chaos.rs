//! Runs a reliability scenario long and prints the figures table:
//!
//! ```sh
//! cargo run --release -p kafka-integration-tests --bin chaos -- --scenario R1 --records 500000 --seed 7 --minutes 30
//! ```
//!
//! With `--minutes`, the scenario runs again and again (seed, seed + 1, ...) until that much
//! time has passed, and the figures are summed; without, it runs once. Exits 1 when an
//! invariant breaks (with the seed of the run that broke it), 2 on bad arguments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kafka_integration_tests::scenario::{run, Params, Scenario};
use kafka_integration_tests::Figures;

const USAGE: &str = "usage: chaos --scenario R1..R17 [--records N] [--seed S] [--minutes M]";

fn parse() -> Result<(Scenario, Params, Option<Duration>), String> {
    let mut args = std::env::args().skip(1);
    let (mut scenario, mut records, mut seed, mut minutes) = (None, 100_000u64, 1u64, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--scenario" => {
                scenario = Some(Scenario::parse(&value).ok_or_else(|| format!("unknown scenario {value}"))?)
            }
            "--records" => records = value.parse().map_err(|e| format!("--records: {e}"))?,
            "--seed" => seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            "--minutes" => {
                minutes =
                    Some(Duration::from_secs_f64(value.parse::<f64>().map_err(|e| format!("--minutes: {e}"))? * 60.0))
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let scenario = scenario.ok_or("--scenario is required")?;
    Ok((scenario, Params { records, seed }, minutes))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (scenario, params, minutes) = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    kafka_integration_tests::init_logs();
    let started = Instant::now();
    let mut total = Figures::default();
    let mut runs = 0u64;
    loop {
        let p = Params { seed: params.seed.wrapping_add(runs), ..params };
        println!("{scenario} run {} seed {}: {}", runs + 1, p.seed, scenario.fault());
        let report = match run(scenario, p).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{scenario} seed {}: {e}", p.seed);
                return ExitCode::FAILURE;
            }
        };
        println!("{report}");
        runs += 1;
        total.add(&report.figures);
        if let Err(e) = report.check() {
            eprintln!("INVARIANT BROKEN: {e}");
            return ExitCode::FAILURE;
        }
        if minutes.map_or(true, |m| started.elapsed() >= m) {
            break;
        }
    }
    println!(
        "{scenario} total: {runs} runs from seed {}, {:.1} min\n{total}",
        params.seed,
        started.elapsed().as_secs_f64() / 60.0
    );
    ExitCode::SUCCESS
}
