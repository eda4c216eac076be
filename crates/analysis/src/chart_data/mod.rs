//! The chart-data stage: every chart's series computed from the frames and fits, typed
//! ([`loopscale_chart::Figure`]) and testable without drawing; `loopscale-plot` only draws them.
//! A chart function returns its figure or the sentence saying which data is missing
//! ([`shared::Built`]); [`list::report_charts`] is the report's charts in order. Report tables
//! that show a chart's numbers take them from here too ([`loss_pivot`]).
//!
//! One module per chart family. Data flows one way: [`shared`] uses no other file here;
//! [`seeds`] (replicate groups as series) and [`isoflop`] use it; [`compute`], [`test_time`]
//! and [`residuals`] use those; [`variants`] uses [`loss_pivot`]; [`list`] uses every family.
//! [`suggestion`] (a `suggest` answer's chart, from plain numbers) uses none.

pub mod compute;
pub mod decoding;
pub mod isoflop;
pub mod laws;
pub mod lineage;
pub mod list;
pub mod loss_pivot;
pub mod residuals;
pub mod seeds;
pub mod shared;
pub mod suggestion;
pub mod tasks;
pub mod test_time;
pub mod training;
pub mod tuning;
pub mod variants;

pub use list::report_charts;
pub use loss_pivot::{LossPivot, final_loss_pivot};
pub use shared::Built;
