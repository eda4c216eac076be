//! Plain-text tables for the terminal: every command that prints rows uses this one renderer.

/// Renders rows under a header, columns padded to their widest cell; cells that parse as numbers
/// are right-aligned so digits line up.
pub fn render(columns: &[String], rows: &[Vec<String>]) -> String {
    let n = columns.len();
    let mut width: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = width[i].saturating_sub(c.chars().count());
                if numeric(c) {
                    format!("{}{}", " ".repeat(pad), c)
                } else {
                    format!("{}{}", c, " ".repeat(pad))
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(columns);
    out.push('\n');
    out.push_str(
        &width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

pub use crate::engine::progress::si;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_numbers_right_and_text_left() {
        let t = render(
            &["name".into(), "loss".into()],
            &[
                vec!["a".into(), "1.5".into()],
                vec!["bbb".into(), "10.25".into()],
            ],
        );
        assert_eq!(t, "name  loss\n----  -----\na       1.5\nbbb   10.25\n");
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(1_234_567.0), "1.235M");
        assert_eq!(si(2e12), "2T");
        assert_eq!(si(512.0), "512");
    }
}
