//! The fuzz targets on stable: every target's body (`fuzz/src/lib.rs`, the same functions the
//! cargo-fuzz binaries call) is run over the checked-in inputs in `fuzz/regressions/<target>/`:
//! seeds from the golden fixtures, hand-made hostile inputs (lengths and counts of 2^31,
//! negative sizes, unknown codecs, SCRAM messages with bad nonces, iteration counts and
//! signatures) and every crashing input a fuzz run finds. A panic is a regression; so is a
//! target whose directory is missing or empty.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_replays_its_checked_in_inputs() {
    for (name, target) in targets::TARGETS {
        let inputs = inputs(name);
        assert!(inputs.len() >= 5, "{name}: only {} inputs checked in", inputs.len());
        for (path, data) in &inputs {
            if let Err(e) = std::panic::catch_unwind(|| target(data)) {
                let why =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("{name}: {} fails: {why:?}", path.display());
            }
        }
        println!("{name}: {} inputs replayed", inputs.len());
    }
}

/// Truncating every seed at every length is what a fuzzer tries first: each target must
/// survive every prefix of every checked-in input (bounded to the first 256 bytes, to stay
/// quick).
#[test]
fn every_fuzz_target_survives_every_prefix_of_its_inputs() {
    for (name, target) in targets::TARGETS {
        let mut runs = 0;
        for (path, data) in inputs(name) {
            for n in 0..data.len().min(256) {
                if let Err(e) = std::panic::catch_unwind(|| target(&data[..n])) {
                    let why =
                        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                    panic!("{name}: the first {n} bytes of {} fail: {why:?}", path.display());
                }
                runs += 1;
            }
        }
        println!("{name}: {runs} prefixes");
    }
}
