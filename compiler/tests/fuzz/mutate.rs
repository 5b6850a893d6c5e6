//! A small mutational fuzzer that needs only the stable toolchain (cargo-fuzz needs nightly, which
//! a fresh machine lacks): inputs from a corpus are changed by byte, token and line edits and by
//! nesting bombs, deterministically from a seed. Shared by the fuzz targets of the workspace
//! (each includes this file).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Changes `input` by one to four random edits; `tokens` are spliced in whole.
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]], others: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(10) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            2 => {
                let t = tokens[rng.below(tokens.len())];
                data.splice(at..at, t.iter().copied());
            }
            3 if !data.is_empty() => {
                // Duplicate a run (repeated keys, doubled lines).
                let start = rng.below(data.len());
                let end = (start + 1 + rng.below(64)).min(data.len());
                let run = data[start..end].to_vec();
                data.splice(at..at, run);
            }
            4 => {
                // A nesting bomb.
                let (open, close) = [
                    (&b"("[..], &b")"[..]),
                    (b"[", b"]"),
                    (b"{", b"}"),
                    (b"{{", b"}}"),
                ][rng.below(4)];
                let n = 1 + rng.below(2000);
                let mut bomb = open.repeat(n);
                bomb.extend(b"1");
                bomb.extend(close.repeat(n));
                data.splice(at..at, bomb);
            }
            5 if !others.is_empty() => {
                // A line from another input.
                let other = &others[rng.below(others.len())];
                let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                let mut l = line.to_vec();
                l.push(b'\n');
                let line_start = data[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                data.splice(line_start..line_start, l);
            }
            6 => {
                // A huge number, or a long run of one byte.
                let t: &[u8] = [
                    &b"99999999999999999999999999"[..],
                    b"-9223372036854775808",
                    b"0x",
                ][rng.below(3)];
                data.splice(at..at, t.iter().copied());
            }
            7 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = [0, 0xff, b'\t', b'\r', b'\\', b'"', b'\'', b'#'][rng.below(8)];
            }
            _ => {
                let lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                if lines.len() > 1 {
                    // Swap or delete a line.
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    let mut lines = lines;
                    if rng.below(2) == 0 {
                        lines.swap(a, b);
                    } else {
                        lines.remove(a);
                    }
                    data = lines.join(&b'\n');
                }
            }
        }
    }
    data
}

/// Files under `dirs` with one of `exts`, sorted.
pub fn corpus(dirs: &[PathBuf], exts: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
                if let Ok(data) = std::fs::read(&p) {
                    out.push((p, data));
                }
            }
        }
    }
    out.sort();
    out
}

/// How long to fuzz: `PROVIUM_FUZZ_SECS`, or `default` executions.
pub enum Budget {
    Execs(u64),
    Time(Duration),
}

impl Budget {
    pub fn from_env(default: u64) -> Budget {
        match std::env::var("PROVIUM_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(secs) => Budget::Time(Duration::from_secs(secs)),
            None => Budget::Execs(default),
        }
    }
    pub fn more(&self, started: Instant, done: u64) -> bool {
        match self {
            Budget::Execs(n) => done < *n,
            Budget::Time(t) => started.elapsed() < *t,
        }
    }
}

/// Runs `target` on inputs in a thread of its own (a runner's worker stack), each with a
/// deadline. The thread is reused until an input misses its deadline (then left behind, and a
/// new one started): a thread per input cost more than most targets. Each input is written to
/// `current` first, so that an abort (a stack overflow cannot be caught) leaves it behind.
pub struct Runner<F> {
    target: F,
    current: std::fs::File,
    limit: Duration,
    worker: Option<Worker>,
}

struct Worker {
    inputs: std::sync::mpsc::Sender<Vec<u8>>,
    results: std::sync::mpsc::Receiver<Result<(), String>>,
}

impl<F> Runner<F>
where
    F: Fn(&[u8]) -> Result<(), String> + Send + 'static + Clone,
{
    pub fn new(target: F, current: &Path, limit: Duration) -> Runner<F> {
        Runner {
            target,
            current: std::fs::File::create(current).expect("the fuzzer's current-input file"),
            limit,
            worker: None,
        }
    }

    pub fn run(&mut self, input: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let _ = self.current.set_len(0);
        let _ = self.current.write_all_at(input, 0);
        let worker = match self.worker.take() {
            Some(w) => w,
            None => self.spawn()?,
        };
        if worker.inputs.send(input.to_vec()).is_err() {
            return Err("the worker thread is gone".to_string());
        }
        match worker.results.recv_timeout(self.limit) {
            Ok(r) => {
                self.worker = Some(worker);
                r
            }
            Err(_) => Err(format!("did not end within {:?}", self.limit)),
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let (inputs, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let (tx, results) = std::sync::mpsc::channel();
        let t = self.target.clone();
        std::thread::Builder::new()
            .stack_size(2 << 20) // what a runner's worker thread has
            .spawn(move || {
                for input in rx {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t(&input)));
                    let r = r.unwrap_or_else(|p| {
                        Err(format!(
                            "panicked: {}",
                            p.downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                                .unwrap_or_default()
                        ))
                    });
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Worker { inputs, results })
    }
}

/// The fuzzing loop: replays the crashers (regression inputs) and the corpus, then mutates.
/// Returns the executions made; failures are saved under `crashers` and fail the test.
pub fn fuzz<F>(
    name: &str,
    corpus: &[Vec<u8>],
    crashers: &Path,
    tokens: &[&[u8]],
    default_execs: u64,
    target: F,
) -> u64
where
    F: Fn(&[u8]) -> Result<(), String> + Send + Sync + 'static + Clone,
{
    let current = std::env::temp_dir().join(format!("provium-fuzz-{name}-current"));
    let mut runner = Runner::new(target, &current, Duration::from_secs(2));
    let mut failures = Vec::new();
    let mut execs = 0u64;
    let replay: Vec<(PathBuf, Vec<u8>)> = corpus_files(crashers);
    for (path, input) in &replay {
        execs += 1;
        if let Err(e) = runner.run(input) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    for input in corpus {
        execs += 1;
        if let Err(e) = runner.run(input) {
            failures.push(format!("corpus input: {e}"));
        }
    }
    let seed = std::env::var("PROVIUM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f9e0_u64);
    let mut rng = Rng::new(seed);
    let budget = Budget::from_env(default_execs);
    let started = Instant::now();
    let mut mutated = 0u64;
    while budget.more(started, mutated) && failures.len() < 10 {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, tokens, corpus);
        mutated += 1;
        if let Err(e) = runner.run(&input) {
            let _ = std::fs::create_dir_all(crashers);
            let path = crashers.join(format!("{name}-{:016x}", rng.next()));
            let _ = std::fs::write(&path, &input);
            failures.push(format!("{e} (saved as {})", path.display()));
        }
    }
    execs += mutated;
    eprintln!(
        "fuzz {name}: {execs} executions ({mutated} mutated) in {:.1} s, seed {seed:#x}",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_file(&current);
    execs
}

fn corpus_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| std::fs::read(e.path()).ok().map(|d| (e.path(), d)))
        .collect();
    out.sort();
    out
}
