//! The chart-data stage: every chart's series computed from the frames and fits, typed
//! ([`loopscale_chart::Figure`]) and testable without drawing; `loopscale-plot` only draws them.
//! A chart function returns its figure or the sentence saying which data is missing
//! ([`shared::Built`]); [`list::report_charts`] is the report's charts in order. Report tables
//! that show a chart's numbers take them from here too ([`loss_pivot`]).
//!
//! With seeds, a chart draws each replicate group's mean with ±1 SE bars (or a band, for a
//! training curve) and its seeds pale behind; with one seed per configuration it draws its runs
//! as it always did. [`seeds`] turns group curves into those series.
//!
//! One module per chart family. Data flows one way: [`shared`] uses no other file here;
//! [`seeds`] (replicate groups as series) uses it; every family that draws groups ([`training`],
//! [`compute`], [`isoflop`], [`test_time`], [`decoding`], [`tasks`]) uses [`seeds`];
//! [`residuals`] uses [`isoflop`]; [`variants`] uses [`loss_pivot`]; [`list`] uses every family.
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
