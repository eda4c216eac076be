//! What `/api/stream` (server-sent events) tells one open page, look by look: the overview when
//! it changed, and every training step logged since the previous look.
//!
//! Each look opens the database afresh (see `source`), so a stream goes on across a `collect`
//! that replaces the file; a page that connects is sent the overview at once and, from then on,
//! only what is new.

use std::collections::HashMap;

use serde_json::json;

use crate::overview;
use crate::source::Source;

/// Most steps one `metrics` event carries (a run that logged more since the last look sends
/// its newest ones; the page reloads the full curve anyway).
const MAX_ROWS_PER_EVENT: usize = 5_000;

/// One connection's memory of what it has sent.
#[derive(Default)]
pub struct Watch {
    heads: HashMap<String, u64>,
    last_overview: Option<String>,
    primed: bool,
}

impl Watch {
    /// The events (name, JSON data) due since the last look.
    pub fn look(&mut self, source: &Source) -> Vec<(&'static str, String)> {
        let mut events = Vec::new();
        let view = overview::read(source);
        let text = serde_json::to_string(&view).unwrap_or_default();
        if self.last_overview.as_ref() != Some(&text) {
            events.push(("overview", text.clone()));
            self.last_overview = Some(text);
        }
        let Ok(store) = source.open() else {
            return events;
        };
        let Ok(heads) = store.metric_heads() else {
            return events;
        };
        let mut rows = Vec::new();
        for (key, head) in heads {
            let old = self.heads.get(&key).copied();
            if old.is_some_and(|o| o >= head) {
                continue;
            }
            if self.primed
                && let Ok(points) = store.train_points(&key, old.unwrap_or(0))
            {
                rows.extend(points.into_iter().map(|p| {
                    json!({
                        "key": key,
                        "step": p.step,
                        "tokens": p.tokens,
                        "flops": p.flops,
                        "train_loss": p.train_loss,
                        "elapsed_seconds": p.elapsed_seconds,
                    })
                }));
            }
            self.heads.insert(key, head);
        }
        self.primed = true;
        if !rows.is_empty() {
            let skip = rows.len().saturating_sub(MAX_ROWS_PER_EVENT);
            events.push((
                "metrics",
                serde_json::Value::Array(rows.split_off(skip)).to_string(),
            ));
        }
        events
    }
}
