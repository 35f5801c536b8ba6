//! Runs inputs through a target without AFL, on stable `cargo run`: to check a corpus, or to
//! reproduce a crash AFL found with a readable panic and backtrace.
//!
//! `replay` replays every target's seed corpus (`corpus/<target>/`);
//! `replay <target> <file or directory>...` replays those inputs through one target.
//! Exits 1 when any input panics.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let runs: Vec<(String, Vec<PathBuf>)> = match args.split_first() {
        None => warden::fuzzing::TARGETS
            .iter()
            .map(|(name, _)| (name.to_string(), vec![corpus.join(name)]))
            .chain([("all".to_string(), vec![corpus.join("all")])])
            .collect(),
        Some((name, paths)) => vec![(name.clone(), paths.iter().map(PathBuf::from).collect())],
    };
    let (mut inputs, mut panicked) = (0, 0);
    for (name, paths) in runs {
        let Some(target) = warden_fuzz::target(&name) else {
            eprintln!("unknown target {name}; one of: all, {}", names());
            return ExitCode::from(2);
        };
        for file in files(&paths) {
            let Ok(data) = std::fs::read(&file) else {
                eprintln!("cannot read {}", file.display());
                return ExitCode::from(2);
            };
            inputs += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                eprintln!("{name}: {} panicked", file.display());
                panicked += 1;
            }
        }
    }
    println!("{inputs} inputs, {panicked} panicked");
    if panicked == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The files named, with directories expanded one level (AFL's `queue/`, `crashes/`).
fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && !p.ends_with("README.txt"))
                    .collect();
                found.sort();
                out.extend(found);
            }
            Err(_) => out.push(path.clone()),
        }
    }
    out
}

fn names() -> String {
    warden::fuzzing::TARGETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
