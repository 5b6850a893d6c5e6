//! Requirements on the kernel that are written as text (`requires: {kernel: ">=5.6, <6.2",
//! config: [CONFIG_KSM]}`), as types: the checker parses them into these, the emitter writes
//! them back in their canonical spelling, and the runtime parses that with the same `FromStr`
//! and asks the same `contains`/`holds`. One grammar and one rule, so a spec and a Lua test
//! that write the same condition get the same answer.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A requirement written wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// An operator other than `<`, `<=`, `>`, `>=`, `==`.
    #[error("bad comparison `{op}` in kernel range `{range}` (use >=, >, <=, <, ==)")]
    Comparison {
        /// The operator written.
        op: String,
        /// The whole range.
        range: String,
    },
    /// A version that is not one to three dot-separated numbers.
    #[error("bad kernel version `{version}` in `{range}` (e.g. >=5.6, <6.2)")]
    Version {
        /// The version written.
        version: String,
        /// The whole range.
        range: String,
    },
    /// A config condition that names no option.
    #[error("bad config condition `{0}` (expected CONFIG_X, CONFIG_X=y|m|VALUE or !CONFIG_X)")]
    Config(String),
}

/// How a kernel's version compares with a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`, `=` or none
    Equal,
}

impl Comparison {
    fn admits(self, o: Ordering) -> bool {
        match self {
            Comparison::Less => o.is_lt(),
            Comparison::LessOrEqual => o.is_le(),
            Comparison::Greater => o.is_gt(),
            Comparison::GreaterOrEqual => o.is_ge(),
            Comparison::Equal => o.is_eq(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
        }
    }
}

/// A kernel version range: every bound must hold (`>=5.6, <6.2`; a bare `6.1` is `==6.1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRange {
    /// Each bound: how the kernel compares with a version (`[5, 6]` for 5.6).
    pub bounds: Vec<(Comparison, Vec<u32>)>,
}

impl FromStr for KernelRange {
    type Err = RequirementError;
    fn from_str(text: &str) -> Result<KernelRange, RequirementError> {
        let mut bounds = Vec::new();
        for part in text.split(',') {
            let p = part.trim();
            let op_len = p.chars().take_while(|c| "<>=!".contains(*c)).count();
            let (op, ver) = p.split_at(op_len);
            let cmp = match op {
                "<" => Comparison::Less,
                "<=" => Comparison::LessOrEqual,
                ">" => Comparison::Greater,
                ">=" => Comparison::GreaterOrEqual,
                "" | "==" | "=" => Comparison::Equal,
                other => {
                    return Err(RequirementError::Comparison {
                        op: other.to_string(),
                        range: text.to_string(),
                    })
                }
            };
            let nums: Result<Vec<u32>, _> = ver.trim().split('.').map(str::parse).collect();
            match nums {
                Ok(n) if !n.is_empty() && n.len() <= 3 => bounds.push((cmp, n)),
                _ => {
                    return Err(RequirementError::Version {
                        version: ver.trim().to_string(),
                        range: text.to_string(),
                    })
                }
            }
        }
        Ok(KernelRange { bounds })
    }
}

impl fmt::Display for KernelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (cmp, version)) in self.bounds.iter().enumerate() {
            let v: Vec<String> = version.iter().map(u32::to_string).collect();
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}{}", cmp.as_str(), v.join("."))?;
        }
        Ok(())
    }
}

/// `5.6` → `[5, 6]`; `6.1.0-48-cloud-amd64` → `[6, 1, 0]` (what follows the numbers is the
/// distribution's).
fn release_numbers(release: &str) -> Vec<u32> {
    release
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Missing parts count as 0: `6.1` is `6.1.0`.
fn compare(a: &[u32], b: &[u32]) -> Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

impl KernelRange {
    /// Whether the kernel `release` (`uname -r`) is in the range.
    pub fn contains(&self, release: &str) -> bool {
        let have = release_numbers(release);
        self.bounds
            .iter()
            .all(|(cmp, want)| cmp.admits(compare(&have, want)))
    }
}

/// A kernel configuration condition: `CONFIG_X` (built in or a module), `CONFIG_X=y|m|VALUE`,
/// `!CONFIG_X`; the `CONFIG_` prefix may be left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigCondition {
    /// The option, with its `CONFIG_` prefix.
    pub option: String,
    /// `CONFIG_X=VALUE`: the value it must have; none: built in or a module.
    pub value: Option<String>,
    /// `!CONFIG_X`: the condition is that it does not hold.
    pub negated: bool,
}

impl FromStr for ConfigCondition {
    type Err = RequirementError;
    fn from_str(text: &str) -> Result<ConfigCondition, RequirementError> {
        let c = text.trim();
        let (negated, c) = match c.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, c),
        };
        let (name, value) = match c.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_string())),
            None => (c, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(RequirementError::Config(text.to_string()));
        }
        let option = if name.starts_with("CONFIG_") {
            name.to_string()
        } else {
            format!("CONFIG_{name}")
        };
        Ok(ConfigCondition {
            option,
            value,
            negated,
        })
    }
}

impl fmt::Display for ConfigCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        f.write_str(&self.option)?;
        match &self.value {
            Some(v) => write!(f, "={v}"),
            None => Ok(()),
        }
    }
}

impl ConfigCondition {
    /// Whether the condition holds for a configuration; `value` gives an option's value
    /// (`y`, `m`, a string), `None` when it is not set.
    pub fn holds<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        let have = value(&self.option);
        let holds = match &self.value {
            None => matches!(have, Some("y" | "m")),
            Some(v) => have == Some(v.as_str()),
        };
        holds != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> KernelRange {
        text.parse().unwrap()
    }

    #[test]
    fn kernel_ranges() {
        assert!(range(">=5.6").contains("6.1.0-48-cloud-amd64"));
        assert!(!range(">=6.2").contains("6.1.0-48-cloud-amd64"));
        assert!(range(">=5.6, <6.2").contains("6.1.0"));
        assert!(range(">=5.6").contains("5.6.0"));
        assert!(!range(">=5.6").contains("5.5.19"));
        assert!(range("==6.1").contains("6.1.0"));
        assert!(range("6.1").contains("6.1"));
        assert!(!range("<6.1").contains("6.1.0-rc2"));
        assert!("nonsense".parse::<KernelRange>().is_err());
        assert!(">= five".parse::<KernelRange>().is_err());
        assert!("!=6.1".parse::<KernelRange>().is_err());
        assert!("6.1.2.3".parse::<KernelRange>().is_err());
    }

    #[test]
    fn ranges_round_trip_through_their_spelling() {
        for text in [">=5.6, <6.2", "6.1", "> 4.19,<=6.12.1", "=5"] {
            let r = range(text);
            assert_eq!(range(&r.to_string()), r, "{text} → {r}");
        }
        assert_eq!(range("6.1").to_string(), "==6.1");
    }

    #[test]
    fn config_conditions() {
        let config = [
            ("CONFIG_KSM", "y"),
            ("CONFIG_TUN", "m"),
            ("CONFIG_HZ", "250"),
            ("CONFIG_LOCALVERSION", "-x"),
        ];
        let lookup = |o: &str| config.iter().find(|(k, _)| *k == o).map(|(_, v)| *v);
        let holds = |c: &str| c.parse::<ConfigCondition>().unwrap().holds(lookup);
        assert!(holds("CONFIG_KSM"));
        assert!(holds("KSM=y"));
        assert!(holds("CONFIG_TUN"));
        assert!(!holds("CONFIG_TUN=y"));
        assert!(holds("CONFIG_TUN=m"));
        assert!(holds("!CONFIG_KASAN"));
        assert!(!holds("CONFIG_KASAN"));
        assert!(holds("CONFIG_HZ=250"));
        assert!(holds("CONFIG_LOCALVERSION=\"-x\""));
        assert!("CONFIG_X Y".parse::<ConfigCondition>().is_err());
        for text in ["CONFIG_KSM", "!KASAN", "TUN=m", "CONFIG_HZ=250"] {
            let c: ConfigCondition = text.parse().unwrap();
            assert_eq!(c.to_string().parse::<ConfigCondition>().unwrap(), c);
        }
    }
}
