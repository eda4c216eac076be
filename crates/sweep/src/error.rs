//! `SweepError`: every way a sweep file can be wrong, rendered rustc/ripgrep style.
//!
//! An error always names the file; where the problem has a place in the file it also carries
//! `line:column` and a one-line snippet with a caret, the dotted key involved, and a `help` line
//! saying what to do next. [`Source`] turns byte spans (what the TOML parser gives) into that.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;
use toml::de::DeValue;

/// What kind of mistake a [`SweepError`] reports; stable for tests and callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// A key that no table accepts.
    UnknownKey,
    /// A value of the wrong type (a string where an integer belongs, a table where a list belongs).
    WrongType,
    /// A string that is not one of an enum's allowed values.
    BadEnumValue,
    /// A list axis with no elements.
    EmptyAxis,
    /// A `sweep.zip` group that cannot be paired.
    Zip,
    /// `[sweep]` is missing or its `name` is missing or invalid, or another `[sweep]` key is bad.
    Header,
    /// A `[slurm]` value that is empty, out of range or not in Slurm's format.
    Slurm,
    /// A `[[variants]]` entry without a valid, unique name.
    Variant,
    /// A run whose resolved values are inconsistent or out of range (n_heads ∤ d_model, lr ≤ 0, …).
    InvalidRun,
    /// `data.corpus` does not point at a readable file.
    MissingCorpus,
    /// A token shard (`data.tokens`, `data.val_tokens`) whose header or size is wrong.
    BadShard,
    /// The corpus is too small for the run (a split shorter than one sequence).
    CorpusTooSmall,
    /// The grid would have an unreasonable number of points.
    TooLarge,
}

/// A problem with a sweep file, with enough context to fix it without reading the source.
///
/// Boxed so `Result<_, SweepError>` stays small; its fields are read through `Deref`
/// (`err.kind`, `err.line_col`, …).
#[derive(Clone, Debug)]
pub struct SweepError(Box<ErrorDetails>);

/// The contents of a [`SweepError`].
#[derive(Clone, Debug)]
pub struct ErrorDetails {
    pub kind: ErrorKind,
    /// The sweep file.
    pub path: PathBuf,
    /// 1-based line and column (in characters) of the offending text, when it has one.
    pub line_col: Option<(usize, usize)>,
    /// The dotted key involved (`model.d_model`, `sweep.zip`), when there is one.
    pub key: Option<String>,
    /// One line: what is wrong (expected vs found).
    pub message: String,
    /// The source line and a caret under the span, pre-rendered.
    pub snippet: Option<String>,
    /// Context lines (the run's values, other failures).
    pub notes: Vec<String>,
    /// What to do next.
    pub help: Option<String>,
}

impl SweepError {
    /// An error not tied to a place in the file.
    pub fn new(kind: ErrorKind, path: &Path, message: impl Into<String>) -> SweepError {
        SweepError(Box::new(ErrorDetails {
            kind,
            path: path.to_path_buf(),
            line_col: None,
            key: None,
            message: message.into(),
            snippet: None,
            notes: Vec::new(),
            help: None,
        }))
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Short form for one-line displays: `path:line:col: message`.
    pub fn location(&self) -> String {
        match self.line_col {
            Some((l, c)) => format!("{}:{l}:{c}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

impl std::ops::Deref for SweepError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for SweepError {
    fn deref_mut(&mut self) -> &mut ErrorDetails {
        &mut self.0
    }
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rustc layout: the gutter is as wide as the line number shown in the snippet.
        let pad = " ".repeat(self.line_col.map_or(1, |(l, _)| l.to_string().len()));
        writeln!(f, "error: {}", self.message)?;
        write!(f, "{pad}--> {}", self.location())?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        for note in &self.notes {
            write!(f, "\n{pad} = note: {note}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SweepError {}

/// The sweep file's text and path, for turning byte spans into located errors.
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error pointing at `span` in the file.
    pub fn error(
        &self,
        kind: ErrorKind,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> SweepError {
        let mut err = SweepError::new(kind, self.path, message);
        let (line, col) = self.line_col(span.start);
        err.line_col = Some((line, col));
        err.snippet = Some(self.snippet(span));
        err
    }

    /// An error pointing at `span` when there is one, else at the whole file.
    pub fn error_at(
        &self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> SweepError {
        match span {
            Some(span) => self.error(kind, span, message),
            None => SweepError::new(kind, self.path, message),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn snippet(&self, span: Range<usize>) -> String {
        let (line, col) = self.line_col(span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("");
        // Underline to the end of the span or of the line, whichever comes first; at least one ^.
        let start = floor_char_boundary(self.text, span.start.min(self.text.len()));
        let end = floor_char_boundary(self.text, span.end.min(self.text.len())).max(start);
        let width = self.text[start..end]
            .lines()
            .next()
            .map_or(0, |s| s.chars().count())
            .max(1);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        format!(
            "{pad} |\n{line} | {text}\n{pad} | {}{}",
            " ".repeat(col - 1),
            "^".repeat(width)
        )
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Optimal-string-alignment edit distance (Levenshtein plus adjacent transpositions, so
/// `d_modle` is one edit from `d_model`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// How a message names a value it found: "the string \"big\"", "the integer -1", "the list
/// [64, 128]" (or "a list" when long), "a table". The one wording of every "found …" here.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Number(n) if n.is_f64() => format!("the float {n}"),
        Value::Number(n) => format!("the integer {n}"),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Array(_) => match toml_literal(value) {
            short if short.len() <= 40 => format!("the list {short}"),
            _ => "a list".into(),
        },
        Value::Object(_) => "a table".into(),
        Value::Null => "nothing".into(),
    }
}

/// [`describe`] for a value straight from the TOML parser (dates included).
pub(crate) fn describe_toml(value: &DeValue) -> String {
    match value {
        DeValue::Datetime(d) => format!("the date {d}"),
        other => describe(&json_of(other)),
    }
}

/// A parsed TOML value as JSON, for [`describe`]; dates become their text.
fn json_of(value: &DeValue) -> Value {
    match value {
        DeValue::String(s) => Value::from(s.as_ref()),
        // As `spec::to_json` reads it: hexadecimal, octal and binary literals included.
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(i.to_string())),
        DeValue::Float(f) => f
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::from(f.to_string())),
        DeValue::Boolean(b) => Value::from(*b),
        DeValue::Datetime(d) => Value::from(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|v| json_of(v.get_ref())).collect()),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), json_of(v.get_ref())))
                .collect(),
        ),
    }
}

/// A JSON value as a user would write it in TOML: strings quoted, lists bracketed.
pub(crate) fn toml_literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(toml_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The error for `key`'s value `v` not being `expected`, pointing at the value.
pub(crate) fn wrong_type(
    src: &Source,
    key: &str,
    v: &toml::Spanned<DeValue>,
    expected: &str,
) -> SweepError {
    src.error(
        ErrorKind::WrongType,
        v.span(),
        format!(
            "`{key}`: expected {expected}, found {}",
            describe_toml(v.get_ref())
        ),
    )
    .with_key(key)
}

/// `key`'s value `v` as a string, or the error saying it is not `expected`.
pub(crate) fn expect_string(
    src: &Source,
    key: &str,
    v: &toml::Spanned<DeValue>,
    expected: &str,
) -> Result<String, SweepError> {
    v.get_ref()
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type(src, key, v, expected))
}

/// A TOML syntax error, pointing at its position.
pub(crate) fn syntax_error(src: &Source, e: &toml::de::Error) -> SweepError {
    let message = format!("invalid TOML: {}", e.message().trim_end());
    src.error_at(ErrorKind::Syntax, e.span(), message)
        .with_help("fix the TOML syntax at this position (https://toml.io/en/v1.0.0)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("d_modle", "d_model"), 1);
        assert_eq!(edit_distance("lr", "lr"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn nearest_ignores_far_candidates() {
        assert_eq!(nearest("d_modle", ["d_model", "n_heads"]), Some("d_model"));
        assert_eq!(nearest("zzzzzz", ["d_model", "n_heads"]), None);
    }

    #[test]
    fn line_col_is_one_based_and_counts_chars() {
        let src = Source {
            path: Path::new("x.toml"),
            text: "a = 1\nbé = 2\n",
        };
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        assert_eq!(src.line_col(10), (2, 4)); // after "bé " — é is two bytes, one column
    }
}
