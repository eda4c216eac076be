//! The optional `[slurm]` table of a sweep file: how `loopscale run --executor slurm` asks Slurm
//! for resources. Each key can also be given on the command line, which wins.
//!
//! ```toml
//! [slurm]
//! partition = "gpu"          # sbatch --partition (default: the cluster's default partition)
//! time = "2:00:00"           # per run: sbatch --time, in Slurm's formats (MM, HH:MM:SS, D-HH, ...)
//! gpus_per_run = 1           # --gres=gpu:N per array task (default 0)
//! cpus_per_run = 8           # --cpus-per-task (default 1)
//! max_parallel = 16          # array throttle: --array=...%K (default: no limit)
//! sbatch_args = ["--account=myproj", "--qos=normal"]   # passed to sbatch as they are
//! ```
//!
//! Parsing lives here rather than in `spec` because none of these keys is a grid axis: a list
//! is an error (except `sbatch_args`, which is one list).

use toml::Spanned;
use toml::de::DeValue;

use super::error::{self, ErrorKind, Source, SweepError, describe_toml, nearest};

/// The keys of `[slurm]`, with their defaults, for messages and `valid_keys`.
pub(crate) const SLURM_KEYS: &[(&str, &str)] = &[
    ("partition", "(cluster default)"),
    ("time", "(partition default)"),
    ("gpus_per_run", "0"),
    ("cpus_per_run", "1"),
    ("max_parallel", "(no limit)"),
    ("sbatch_args", "[]"),
];

/// What the `[slurm]` table sets; `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus_per_run: Option<u32>,
    pub cpus_per_run: Option<u32>,
    pub max_parallel: Option<u32>,
    pub sbatch_args: Vec<String>,
}

pub(crate) fn parse_slurm(
    src: &Source,
    value: &Spanned<DeValue>,
) -> Result<SlurmSettings, SweepError> {
    let Some(table) = value.get_ref().as_table() else {
        return Err(src
            .error(
                ErrorKind::WrongType,
                value.span(),
                format!(
                    "`slurm` must be a table, found {}",
                    describe_toml(value.get_ref())
                ),
            )
            .with_key("slurm")
            .with_help("write it as a table header `[slurm]` followed by `key = value` lines"));
    };
    let mut out = SlurmSettings::default();
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (k, v) in entries {
        let key = k.get_ref().as_ref();
        let dotted = format!("slurm.{key}");
        match key {
            "partition" => {
                out.partition = Some(string(src, &dotted, v, "a partition name such as \"gpu\"")?)
            }
            "time" => {
                let s = string(src, &dotted, v, "a time limit such as \"2:00:00\"")?;
                if !is_slurm_time(&s) {
                    return Err(src
                        .error(ErrorKind::Slurm, v.span(), format!("`slurm.time` = {s:?} is not a Slurm time limit"))
                        .with_key(dotted)
                        .with_help("Slurm accepts MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, e.g. \"2:00:00\" or \"1-12\""));
                }
                out.time = Some(s);
            }
            "gpus_per_run" => out.gpus_per_run = Some(uint(src, &dotted, v, 0)?),
            "cpus_per_run" => out.cpus_per_run = Some(uint(src, &dotted, v, 1)?),
            "max_parallel" => out.max_parallel = Some(uint(src, &dotted, v, 1)?),
            "sbatch_args" => {
                let DeValue::Array(items) = v.get_ref() else {
                    return Err(wrong_type(
                        src,
                        &dotted,
                        v,
                        "a list of strings such as [\"--account=myproj\"]",
                    ));
                };
                out.sbatch_args = items
                    .iter()
                    .map(|it| {
                        string(
                            src,
                            &dotted,
                            it,
                            "a list of strings such as [\"--account=myproj\"]",
                        )
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                let mut err = src
                    .error(
                        ErrorKind::UnknownKey,
                        k.span(),
                        format!("unknown key `{dotted}`"),
                    )
                    .with_key(dotted.clone());
                if let Some(s) = nearest(key, SLURM_KEYS.iter().map(|(k, _)| *k)) {
                    err.message
                        .push_str(&format!("; did you mean `slurm.{s}`?"));
                }
                let keys: Vec<String> = SLURM_KEYS.iter().map(|(k, _)| format!("`{k}`")).collect();
                err.help = Some(format!("[slurm] takes {}", keys.join(", ")));
                return Err(err);
            }
        }
    }
    Ok(out)
}

/// Slurm's `--time` formats: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`
/// (and `UNLIMITED`/`INFINITE`).
pub fn is_slurm_time(s: &str) -> bool {
    if matches!(s, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return true;
    }
    let num = |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    if days.is_some_and(|d| !num(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    !parts.is_empty() && parts.len() <= 3 && parts.iter().all(|p| num(p))
}

/// The wrong-type error, saying when the value is a list that a `[slurm]` key is one value.
fn wrong_type(src: &Source, key: &str, v: &Spanned<DeValue>, expected: &str) -> SweepError {
    let mut err = error::wrong_type(src, key, v, expected);
    if v.get_ref().is_array() && key != "slurm.sbatch_args" {
        err.help = Some(format!(
            "`{key}` is one value for the whole sweep, not a grid axis"
        ));
    }
    err
}

/// A non-empty string.
fn string(
    src: &Source,
    key: &str,
    v: &Spanned<DeValue>,
    expected: &str,
) -> Result<String, SweepError> {
    let s = error::expect_string(src, key, v, expected)
        .map_err(|_| wrong_type(src, key, v, expected))?;
    if s.trim().is_empty() {
        return Err(src
            .error(
                ErrorKind::Slurm,
                v.span(),
                format!("`{key}` is empty: expected {expected}"),
            )
            .with_key(key)
            .with_help("remove the key to use the default"));
    }
    Ok(s)
}

fn uint(src: &Source, key: &str, v: &Spanned<DeValue>, min: u32) -> Result<u32, SweepError> {
    let n = match v.get_ref() {
        DeValue::Integer(i) => i.to_string().parse::<i64>().ok(),
        _ => None,
    };
    let Some(n) = n else {
        let found = describe_toml(v.get_ref());
        return Err(src
            .error(
                ErrorKind::WrongType,
                v.span(),
                format!("`{key}`: expected an integer ≥ {min}, found {found}"),
            )
            .with_key(key)
            .with_help(if v.get_ref().is_array() {
                format!("`{key}` is one value for the whole sweep, not a grid axis")
            } else {
                format!("write a whole number, e.g. {key} = {}", min.max(1))
            }));
    };
    if n < min as i64 || n > u32::MAX as i64 {
        return Err(src
            .error(
                ErrorKind::Slurm,
                v.span(),
                format!("`{key}` = {n} is out of range: expected an integer ≥ {min}"),
            )
            .with_key(key)
            .with_help(format!(
                "write a whole number ≥ {min}, or remove the key to use the default"
            )));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::is_slurm_time;

    #[test]
    fn slurm_time_formats() {
        for ok in [
            "30",
            "30:00",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
        ] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in ["", "2h", "1:2:3:4", "-1", "1-", "a:00", "1.5"] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
    }
}
