//! `--partition count:K/N` and `--partition hash:K/N`: one shard of the files, for CI matrices.
//! As in cargo-nextest, `count` deals the files round-robin in their sorted order (even shards,
//! but adding a file moves others), and `hash` places each file by a hash of its path (stable
//! when files come and go). Either way, every file lands in exactly one shard.

use super::discover::TestFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Count { shard: u64, total: u64 },
    Hash { shard: u64, total: u64 },
}

impl std::str::FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Partition, String> {
        let usage = "expected count:K/N or hash:K/N with 1 <= K <= N (e.g. count:1/3)";
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("bad partition `{s}`: {usage}"))?;
        let (k, n) = rest
            .split_once('/')
            .ok_or_else(|| format!("bad partition `{s}`: {usage}"))?;
        let (shard, total) = match (k.trim().parse::<u64>(), n.trim().parse::<u64>()) {
            (Ok(k), Ok(n)) if k >= 1 && n >= 1 && k <= n => (k, n),
            _ => return Err(format!("bad partition `{s}`: {usage}")),
        };
        match kind {
            "count" => Ok(Partition::Count { shard, total }),
            "hash" => Ok(Partition::Hash { shard, total }),
            other => {
                let hint = provium_compiler::diag::did_you_mean_suffix(other, ["count", "hash"]);
                Err(format!(
                    "bad partition `{s}`: unknown kind `{other}`{hint} ({usage})"
                ))
            }
        }
    }
}

impl Partition {
    /// The files of this shard, in their order.
    pub fn select(&self, files: Vec<TestFile>) -> Vec<TestFile> {
        match *self {
            Partition::Count { shard, total } => files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| (*i as u64 % total) + 1 == shard)
                .map(|(_, f)| f)
                .collect(),
            Partition::Hash { shard, total } => files
                .into_iter()
                .filter(|f| stable_hash(&f.display) % total + 1 == shard)
                .collect(),
        }
    }
}

/// The same number for the same path on every machine and version.
fn stable_hash(path: &str) -> u64 {
    let h = blake3::hash(path.replace('\\', "/").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::discover::FileKind;

    fn files(n: usize) -> Vec<TestFile> {
        (0..n)
            .map(|i| TestFile {
                path: format!("t/{i:03}.lua").into(),
                display: format!("t/{i:03}.lua"),
                kind: FileKind::Lua,
                kernel: None,
            })
            .collect()
    }

    #[test]
    fn shards_cover_every_file_once() {
        for kind in ["count", "hash"] {
            let mut seen = Vec::new();
            for k in 1..=3 {
                let p: Partition = format!("{kind}:{k}/3").parse().unwrap();
                let shard = p.select(files(20));
                if kind == "count" {
                    assert!((6..=7).contains(&shard.len()), "even shards");
                }
                seen.extend(shard.into_iter().map(|f| f.display));
            }
            seen.sort();
            let all: Vec<String> = files(20).into_iter().map(|f| f.display).collect();
            assert_eq!(seen, all, "{kind}: every file exactly once");
        }
    }

    #[test]
    fn hash_shards_are_stable_when_files_come_and_go() {
        let p: Partition = "hash:2/4".parse().unwrap();
        let before: Vec<String> = p.select(files(10)).into_iter().map(|f| f.display).collect();
        let after: Vec<String> = p.select(files(30)).into_iter().map(|f| f.display).collect();
        assert!(before.iter().all(|f| after.contains(f)));
    }

    #[test]
    fn bad_partitions_say_what_is_expected() {
        assert!("count:0/3".parse::<Partition>().is_err());
        assert!("count:4/3".parse::<Partition>().is_err());
        let e = "cuont:1/2".parse::<Partition>().unwrap_err();
        assert!(e.contains("did you mean `count`"), "{e}");
    }
}
