//! Reading CSV files as frames: polars' CSV reader splits the file (a header row of column
//! names, quoted names such as `"Model Size"` allowed, then one record per row; lines starting
//! with `#` are comments), and [`typed`] gives each column the type its cells hold, as the
//! store's tables arrive typed ([`super::columns::to_frame`]). A fit's points come from that
//! frame by column name ([`points_of`]), read as the database's points are read from its runs
//! frame. Which column is N, D, C, loss, ... is chosen by name ([`CsvColumns`], as the CLI's
//! `--n-col`-style options pass them).

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use polars::prelude::{
    Column, CsvParseOptions, CsvReadOptions, DataFrame, DataType, PlSmallStr, SerReader,
};

use super::columns::{filter_rows, opt_f64s, strs};
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

    /// The columns read as labels, never as numbers (a group named `1e8` stays `1e8`).
    fn text_columns(&self) -> Vec<&str> {
        [&self.group, &self.curve]
            .into_iter()
            .filter_map(|c| c.as_deref())
            .collect()
    }
}

/// A CSV text as a frame of its cells as written: every column text, each cell and name
/// trimmed. A byte-order mark is dropped; blank lines (records whose every cell is empty) are
/// skipped. A record longer than the header is an error; polars reads a shorter one's missing
/// cells as empty, as a fit then says by row and column ([`points_of`]).
pub fn text_frame(text: &str) -> Result<DataFrame> {
    let text = text.trim_start_matches('\u{feff}');
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        bail!("empty CSV");
    }
    let read = |truncate: bool| {
        let parse = CsvParseOptions::default()
            .with_comment_prefix(Some("#"))
            // Empty cells are empty text, not NULL: the pool's "not yet measured".
            .with_missing_is_null(false)
            .with_truncate_ragged_lines(truncate);
        CsvReadOptions::default()
            .with_has_header(true)
            // Every column as text: the cells' types are decided by `typed`, with std's parser.
            .with_infer_schema_length(Some(0))
            .with_parse_options(parse)
            .into_reader_with_file_handle(Cursor::new(text.as_bytes()))
            .finish()
    };
    let df = read(false).map_err(|e| {
        // polars' word for a long record names a Python option; say what is wrong instead.
        match read(true) {
            Ok(header) if e.to_string().contains("more fields") => {
                anyhow!(
                    "a record has more fields than the header's {}",
                    header.width()
                )
            }
            _ => anyhow!("{e}"),
        }
    })?;
    let mut cols = Vec::with_capacity(df.width());
    for col in df.columns() {
        // polars leaves a quoted name's doubled quotes doubled; a cell's it undoes.
        let name = col.name().trim().replace("\"\"", "\"");
        let cells: Vec<&str> = col
            .str()?
            .iter()
            .map(|c| c.unwrap_or_default().trim())
            .collect();
        cols.push(Column::new(PlSmallStr::from(name), cells));
    }
    let df = DataFrame::new(df.height(), cols)?;
    let keep: Vec<bool> = (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .any(|c| c.str().is_ok_and(|s| s.get(i) != Some("")))
        })
        .collect();
    filter_rows(&df, &keep)
}

/// The frame of [`text_frame`] typed: a column whose every cell reads as a number (Rust's
/// `f64` syntax) is `Float64`, one whose cells are numbers or empty is `Float64` with NULLs for
/// the empty ones, any other stays text, as do the columns `text` names.
pub fn typed(frame: &DataFrame, text: &[&str]) -> Result<DataFrame> {
    let cols = frame
        .columns()
        .iter()
        .map(|col| -> Result<Column> {
            let name = col.name().as_str();
            let cells = col.str()?;
            let numbers: Option<Vec<Option<f64>>> = cells
                .iter()
                .map(Option::unwrap_or_default)
                .map(|c| match c {
                    "" => Some(None),
                    c => c.parse::<f64>().ok().map(Some),
                })
                .collect();
            Ok(match numbers {
                // A column of empty cells only is text: nothing in it says it holds numbers.
                Some(v) if !text.contains(&name) && v.iter().any(Option::is_some) => {
                    Column::new(col.name().clone(), v)
                }
                _ => col.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DataFrame::new(frame.height(), cols)?)
}

/// A CSV file as a typed frame ([`text_frame`], [`typed`]), with the columns `text` as text.
pub fn read_frame(path: &Path, text: &[&str]) -> Result<DataFrame> {
    let contents =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text_frame(&contents)
        .and_then(|f| typed(&f, text))
        .with_context(|| format!("parsing {}", path.display()))
}

pub fn read_points(path: impl AsRef<Path>, cols: &CsvColumns) -> Result<Points> {
    let path = path.as_ref();
    let frame = read_frame(path, &cols.text_columns())?;
    points_of(&frame, cols).with_context(|| format!("parsing {}", path.display()))
}

/// One CSV record: its 1-based row number (the header not counted) and its cells.
pub type Record = (usize, Vec<String>);

/// A CSV text's header and records, each cell as written (trimmed), every record as long as
/// the header ([`text_frame`]).
pub fn records(text: &str) -> Result<(Vec<String>, Vec<Record>)> {
    let frame = text_frame(text)?;
    let header: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let cells: Vec<Vec<String>> = header
        .iter()
        .map(|h| strs(&frame, h))
        .collect::<Result<_>>()?;
    let records = (0..frame.height())
        .map(|i| (i + 1, cells.iter().map(|c| c[i].clone()).collect()))
        .collect();
    Ok((header, records))
}

/// The points of a CSV text (see [`points_of`]).
pub fn parse_points(text: &str, cols: &CsvColumns) -> Result<Points> {
    points_of(&typed(&text_frame(text)?, &cols.text_columns())?, cols)
}

/// A numeric column of a CSV's frame, or an error naming the row and the cell that is not a
/// number (or is empty).
fn numbers(frame: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let col = frame.column(name)?;
    if col.dtype() == &DataType::String {
        let cells = col.str()?;
        // A text column: its first cell that is not a number says why.
        let (row, cell) = cells
            .iter()
            .map(Option::unwrap_or_default)
            .enumerate()
            .find(|(_, c)| c.parse::<f64>().is_err())
            .unwrap_or((0, ""));
        if cell.is_empty() {
            bail!("row {} below the header: column {name:?} is empty", row + 1);
        }
        bail!(
            "row {} below the header: column {name:?}: {cell:?} is not a number",
            row + 1
        );
    }
    opt_f64s(frame, name)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| anyhow!("row {} below the header: column {name:?} is empty", i + 1))
        })
        .collect()
}

/// The points of a CSV's typed frame: each of `cols`' columns by name. A name the caller chose
/// must exist; a default name absent from the file is not read. Chinchilla-style data with N
/// and C but no D get D = C/(6N).
pub fn points_of(frame: &DataFrame, cols: &CsvColumns) -> Result<Points> {
    let header: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let has = |name: &str| header.iter().any(|h| h == name);
    // A name the caller chose explicitly must exist; the defaults are looked up leniently.
    let present = |name: &Option<String>, default: &Option<String>| -> Result<Option<String>> {
        let Some(n) = name else { return Ok(None) };
        if has(n) {
            Ok(Some(n.clone()))
        } else if default.as_deref() != Some(n.as_str()) {
            bail!("no column named {n:?} (have {header:?})")
        } else {
            Ok(None)
        }
    };
    let defaults = CsvColumns::default();
    let num = |name: &Option<String>, default: &Option<String>| -> Result<Option<Vec<f64>>> {
        present(name, default)?
            .map(|n| numbers(frame, &n))
            .transpose()
    };
    let text = |name: &Option<String>, default: &Option<String>| -> Result<Option<Vec<String>>> {
        present(name, default)?.map(|n| strs(frame, &n)).transpose()
    };
    if !has(&cols.loss) {
        bail!("no loss column {:?} (have {header:?})", cols.loss);
    }
    let mut points = Points {
        n: num(&cols.n, &defaults.n)?,
        d: num(&cols.d, &defaults.d)?,
        c: num(&cols.c, &defaults.c)?,
        loss: numbers(frame, &cols.loss)?,
        loops: num(&cols.loops, &defaults.loops)?,
        test_loops: num(&cols.test_loops, &defaults.test_loops)?,
        group: text(&cols.group, &defaults.group)?,
        curve: text(&cols.curve, &defaults.curve)?,
    };
    if points.d.is_none() && points.n.is_some() && points.c.is_some() {
        // Chinchilla-style data record N and C only; D = C/(6N) by the 6ND convention.
        points.d = Some(points.tokens()?);
    }
    points.validate()?;
    Ok(points)
}

/// Every column of a CSV file whose values all read as numbers, by header name (for laws
/// written as expressions, which may read any of them); text columns, and columns with empty
/// cells, are left out.
pub fn read_numeric_columns(path: impl AsRef<Path>) -> Result<Vec<(String, Vec<f64>)>> {
    let path = path.as_ref();
    let frame = read_frame(path, &[])?;
    numeric_columns(&frame).with_context(|| format!("parsing {}", path.display()))
}

/// [`read_numeric_columns`] of a CSV's typed frame.
pub fn numeric_columns(frame: &DataFrame) -> Result<Vec<(String, Vec<f64>)>> {
    frame
        .columns()
        .iter()
        .filter(|c| c.dtype() == &DataType::Float64 && c.null_count() == 0)
        .map(|c| Ok((c.name().to_string(), c.f64()?.into_no_null_iter().collect())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_cells_comments_and_a_byte_order_mark() {
        let text = "\u{feff}# made by hand\n\"Model Size\", x ,\"a \"\"q\"\", b\"\n1, 2 ,\"p, q\"\n\n3,,r\n";
        let (header, records) = records(text).unwrap();
        assert_eq!(header, vec!["Model Size", "x", r#"a "q", b"#]);
        assert_eq!(
            records,
            vec![
                (1, vec!["1".to_string(), "2".into(), "p, q".into()]),
                (2, vec!["3".to_string(), "".into(), "r".into()]),
            ]
        );
        assert!(records_err("a,b\n\"open,1\n").is_some());
    }

    fn records_err(text: &str) -> Option<String> {
        records(text).err().map(|e| format!("{e:#}"))
    }

    #[test]
    fn a_long_record_is_an_error_and_a_short_one_has_empty_cells() {
        let short = records("a,b\n1,2\n3\n").unwrap().1;
        assert_eq!(short[1], (2, vec!["3".to_string(), "".into()]));
        let e = format!(
            "{:#}",
            parse_points("n,loss\n1,2\n3\n", &CsvColumns::default()).unwrap_err()
        );
        assert!(
            e.contains("row 2") && e.contains("\"loss\" is empty"),
            "{e}"
        );
        let long = records_err("a,b\n1,2\n1,2,3\n").unwrap();
        assert!(long.contains("more fields than the header's 2"), "{long}");
        assert_eq!(records_err("# only a comment\n").unwrap(), "empty CSV");
    }

    #[test]
    fn columns_are_typed_by_their_cells_and_labels_stay_text() {
        let frame = typed(
            &text_frame("n,loss,name,group,gap\n1e8,2.5,a,1e8,\n2e8,inf,b,2,3\n").unwrap(),
            &["group"],
        )
        .unwrap();
        let (number, text) = (DataType::Float64, DataType::String);
        // n, loss, name, group (a label, though its cells are numbers), gap (one cell empty).
        assert_eq!(
            frame.dtypes(),
            vec![number.clone(), number.clone(), text.clone(), text, number]
        );
        assert_eq!(strs(&frame, "group").unwrap(), vec!["1e8", "2"]);
        let numeric: Vec<String> = numeric_columns(&frame)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            numeric,
            vec!["n", "loss"],
            "a column with an empty cell is left out"
        );
    }

    #[test]
    fn a_bad_or_empty_cell_is_named_by_row_and_column() {
        let err = |text: &str| {
            format!(
                "{:#}",
                parse_points(text, &CsvColumns::default()).unwrap_err()
            )
        };
        let e = err("n,loss\n1,2\n2,x\n");
        assert!(
            e.contains("row 2") && e.contains("\"loss\"") && e.contains("\"x\""),
            "{e}"
        );
        let e = err("n,loss\n1,\n2,3\n");
        assert!(
            e.contains("row 1") && e.contains("\"loss\"") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn the_values_are_those_of_std_parse() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/chinchilla_epoch_extracted.csv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let frame = typed(&text_frame(&text).unwrap(), &[]).unwrap();
        let (header, records) = records(&text).unwrap();
        for (j, h) in header.iter().enumerate() {
            let Ok(v) = opt_f64s(&frame, h) else { continue };
            if frame.column(h).unwrap().dtype() != &DataType::Float64 {
                continue;
            }
            for ((_, r), x) in records.iter().zip(v) {
                assert_eq!(x.unwrap().to_bits(), r[j].parse::<f64>().unwrap().to_bits());
            }
        }
    }
}
