//! Reading points from CSV: a header row of column names (quoted names such as
//! `"Model Size"` allowed), then one point per row. Which column is N, D, C, loss, ... is
//! chosen by name, as the CLI's `--n-col`-style options will pass them. Lines starting
//! with `#` are comments.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use loopscale_fit::Points;

/// Column names to read; `None` leaves that column out.
#[derive(Debug, Clone)]
pub struct CsvColumns {
    pub n: Option<String>,
    pub d: Option<String>,
    pub c: Option<String>,
    pub loss: String,
    pub loops: Option<String>,
    pub test_loops: Option<String>,
    pub group: Option<String>,
    pub curve: Option<String>,
}

impl Default for CsvColumns {
    /// loopscale's own export names; a column that is absent from the file is skipped.
    fn default() -> Self {
        CsvColumns {
            n: Some("n".into()),
            d: Some("d".into()),
            c: Some("c".into()),
            loss: "loss".into(),
            loops: Some("loops".into()),
            test_loops: Some("test_loops".into()),
            group: Some("group".into()),
            curve: Some("curve".into()),
        }
    }
}

impl CsvColumns {
    /// Epoch AI's extraction of Chinchilla's Figure 4.
    pub fn epoch_chinchilla() -> Self {
        CsvColumns {
            n: Some("Model Size".into()),
            d: None,
            c: Some("Training FLOP".into()),
            loss: "loss".into(),
            loops: None,
            test_loops: None,
            group: None,
            curve: None,
        }
    }
}

/// Split one CSV record (RFC 4180: fields may be quoted; `""` inside quotes is a quote).
pub fn split_record(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, _) => cur.push(ch),
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (false, _) => cur.push(ch),
        }
    }
    if quoted {
        bail!("unterminated quote in: {line}");
    }
    fields.push(cur);
    Ok(fields.into_iter().map(|f| f.trim().to_string()).collect())
}

pub fn read_points(path: impl AsRef<Path>, cols: &CsvColumns) -> Result<Points> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_points(&text, cols).with_context(|| format!("parsing {}", path.display()))
}

/// One CSV record: its 1-based line number and its fields.
pub type Record = (usize, Vec<String>);

/// A CSV text's header and records (each with its 1-based line number), every record as long as
/// the header; blank lines and `#` comments are skipped, a byte-order mark is dropped.
pub fn records(text: &str) -> Result<(Vec<String>, Vec<Record>)> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or_else(|| anyhow!("empty CSV"))?;
    let header = split_record(header.trim_start_matches('\u{feff}'))?;
    let records: Vec<Record> = lines
        .map(|(i, l)| split_record(l).map(|r| (i + 1, r)))
        .collect::<Result<_>>()?;
    for (line, r) in &records {
        if r.len() != header.len() {
            bail!(
                "line {line}: {} fields, header has {}",
                r.len(),
                header.len()
            );
        }
    }
    Ok((header, records))
}

pub fn parse_points(text: &str, cols: &CsvColumns) -> Result<Points> {
    let (header, records) = records(text)?;
    let find = |name: &str| header.iter().position(|h| h == name);
    let numeric = |j: usize| -> Result<Vec<f64>> {
        records
            .iter()
            .map(|(line, r)| {
                r[j].parse::<f64>()
                    .with_context(|| format!("line {line}: column {:?}: {:?}", header[j], r[j]))
            })
            .collect()
    };
    let text_col = |j: usize| {
        records
            .iter()
            .map(|(_, r)| r[j].clone())
            .collect::<Vec<_>>()
    };
    // A name the caller chose explicitly must exist; the defaults are looked up leniently.
    let explicit =
        |name: &Option<String>, default: &str| name.as_deref().is_some_and(|n| n != default);
    let defaults = CsvColumns::default();
    let opt_num = |name: &Option<String>, default: &Option<String>| -> Result<Option<Vec<f64>>> {
        let Some(n) = name else { return Ok(None) };
        match find(n) {
            Some(j) => numeric(j).map(Some),
            None if explicit(name, default.as_deref().unwrap_or("")) => {
                bail!("no column named {n:?} (have {header:?})")
            }
            None => Ok(None),
        }
    };
    let opt_text =
        |name: &Option<String>, default: &Option<String>| -> Result<Option<Vec<String>>> {
            let Some(n) = name else { return Ok(None) };
            match find(n) {
                Some(j) => Ok(Some(text_col(j))),
                None if explicit(name, default.as_deref().unwrap_or("")) => {
                    bail!("no column named {n:?} (have {header:?})")
                }
                None => Ok(None),
            }
        };
    let loss_j = find(&cols.loss)
        .ok_or_else(|| anyhow!("no loss column {:?} (have {header:?})", cols.loss))?;
    let points = Points {
        n: opt_num(&cols.n, &defaults.n)?,
        d: opt_num(&cols.d, &defaults.d)?,
        c: opt_num(&cols.c, &defaults.c)?,
        loss: numeric(loss_j)?,
        loops: opt_num(&cols.loops, &defaults.loops)?,
        test_loops: opt_num(&cols.test_loops, &defaults.test_loops)?,
        group: opt_text(&cols.group, &defaults.group)?,
        curve: opt_text(&cols.curve, &defaults.curve)?,
    };
    let mut points = points;
    if points.d.is_none() && points.n.is_some() && points.c.is_some() {
        // Chinchilla-style data record N and C only; D = C/(6N) by the 6ND convention.
        points.d = Some(points.tokens()?);
    }
    points.validate()?;
    Ok(points)
}

/// Every column of a CSV file whose values all read as numbers, by header name (for laws
/// written as expressions, which may read any of them); text columns are left out.
pub fn read_numeric_columns(path: impl AsRef<Path>) -> Result<Vec<(String, Vec<f64>)>> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    numeric_columns(&text).with_context(|| format!("parsing {}", path.display()))
}

/// [`read_numeric_columns`] of a CSV text.
pub fn numeric_columns(text: &str) -> Result<Vec<(String, Vec<f64>)>> {
    let (header, records) = records(text)?;
    let mut values: Vec<Option<Vec<f64>>> = header.iter().map(|_| Some(Vec::new())).collect();
    for (_, r) in &records {
        for (col, field) in values.iter_mut().zip(r) {
            let parsed = field.parse::<f64>().ok();
            match (col.as_mut(), parsed) {
                (Some(v), Some(x)) => v.push(x),
                _ => *col = None,
            }
        }
    }
    Ok(header
        .into_iter()
        .zip(values)
        .filter_map(|(h, v)| v.map(|v| (h, v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(
            split_record(r#""Model Size", x ,"a ""q"", b""#).unwrap(),
            vec!["Model Size", "x", r#"a "q", b"#]
        );
        assert!(split_record("\"open").is_err());
        assert_eq!(split_record("a,,b").unwrap(), vec!["a", "", "b"]);
    }
}
