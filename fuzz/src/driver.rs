//! Without AFL: replays every file of the corpus directories given, then (with
//! `--seconds N`) mutates corpus entries at random (bit flips, byte changes, inserted,
//! removed and duplicated runs, splices of two entries) and runs the check on each for N
//! seconds. Coverage-blind, so it finds less than AFL, but it runs anywhere. Prints the
//! number of executions; a failing input is written to `crash-<n>` in the working
//! directory before the panic propagates.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;

/// Runs `check` as described in the module docs, with the process arguments.
pub fn run(name: &str, mut check: impl FnMut(&[u8])) {
    let mut seconds = 0u64;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--seconds N");
        } else {
            dirs.push(PathBuf::from(arg));
        }
    }
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for dir in &dirs {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_file() {
                corpus.push(
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                );
            }
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut execs = 0u64;
    for input in &corpus {
        guarded(&mut check, input, execs);
        execs += 1;
    }
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut rng = rand::rng();
    while start.elapsed() < limit {
        for _ in 0..64 {
            let mut input = corpus[rng.random_range(0..corpus.len())].clone();
            let other = &corpus[rng.random_range(0..corpus.len())];
            for _ in 0..rng.random_range(1..=4) {
                mutate(&mut rng, &mut input, other);
            }
            guarded(&mut check, &input, execs);
            execs += 1;
        }
    }
    println!(
        "{name}: {execs} executions in {:.0} s ({} corpus entries), no failure",
        start.elapsed().as_secs_f64(),
        corpus.len()
    );
}

fn guarded(check: &mut impl FnMut(&[u8]), input: &[u8], n: u64) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
    if let Err(panic) = result {
        let file = format!("crash-{n}");
        let _ = std::fs::write(&file, input);
        eprintln!("failing input written to {file}");
        std::panic::resume_unwind(panic);
    }
}

/// Interesting bytes for paths, hosts, tokens and protobuf.
const BYTES: &[u8] = b"/.%2eEfF05cC\\;?#:@[]*-_~ \0\x7f\x80\xff";

fn mutate(rng: &mut impl Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.random_range(0..7) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = if rng.random_bool(0.5) {
                BYTES[rng.random_range(0..BYTES.len())]
            } else {
                rng.random()
            };
        }
        2 => {
            let i = rng.random_range(0..=len);
            let b = BYTES[rng.random_range(0..BYTES.len())];
            input.insert(i, b);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(8));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(8));
            let run = input[i..i + n].to_vec();
            let at = rng.random_range(0..=len);
            input.splice(at..at, run);
        }
        5 if !other.is_empty() => {
            let i = rng.random_range(0..other.len());
            let n = rng.random_range(1..=(other.len() - i).min(16));
            let at = rng.random_range(0..=len);
            input.splice(at..at, other[i..i + n].iter().copied());
        }
        _ => {
            // A few path-shaped insertions.
            const TOKENS: &[&[u8]] = &[
                b"/..", b"/.", b"%2e", b"%2E%2e", b"//", b"/pub", b"%2f", b"..;", b"%70",
            ];
            let t = TOKENS[rng.random_range(0..TOKENS.len())];
            let at = rng.random_range(0..=len);
            input.splice(at..at, t.iter().copied());
        }
    }
}
