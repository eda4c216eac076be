//! The SQL box: the rules of `loopscale sql` (one statement, read-only, on a read-only
//! connection) plus the limits a page open to others needs: a query's size, the rows kept, and
//! its running time.

use std::time::Duration;

use loopscale_store::QueryResult;

use crate::source::Source;

/// The longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Rows shown on the page; the CSV download holds up to [`MAX_CSV_ROWS`].
pub const MAX_PAGE_ROWS: usize = 1_000;
pub const MAX_CSV_ROWS: usize = 200_000;
/// A query still running after this is stopped.
pub const TIME_LIMIT: Duration = Duration::from_secs(10);

/// A query's outcome: its rows (and whether more were left out), or the sentence saying why it
/// was refused, with the HTTP status that goes with it.
pub type Outcome = Result<(QueryResult, bool), (u16, String)>;

/// Runs `query` under the box's rules, keeping at most `max_rows` rows.
pub fn run(source: &Source, query: &str, max_rows: usize) -> Outcome {
    let query = query.trim();
    if query.is_empty() {
        return Err((
            400,
            "Type one SELECT statement, e.g. SELECT run_key, status, final_val_loss FROM runs"
                .into(),
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err((
            413,
            format!(
                "The query is {} bytes; the box takes at most {MAX_QUERY_BYTES}. For longer ones use `loopscale sql`.",
                query.len()
            ),
        ));
    }
    let store = source.open().map_err(|e| (503, format!("{e:#}")))?;
    store
        .query_limited(query, max_rows, Some(TIME_LIMIT))
        .map_err(|e| (400, e.to_string()))
}
