//! A chart as data: the [`Figure`] the analysis computes and the plot crate draws, and the
//! report's list of charts ([`ReportChart`]).
//!
//! Its own crate, with no dependencies, because two crates must share it and neither may know
//! the other: `loopscale-analysis` produces every chart's series (typed, testable without
//! drawing) and `loopscale-plot` only draws them, so plot depends on this crate and not on the
//! analysis, polars or the fits (the compiler enforces "plot only draws"). A module of the
//! analysis would have made plot depend on the analysis; a module of plot would have made the
//! analysis depend on plotters.
//!
//! [`figure`] is the description (figures, panels, series, their kinds and palette indices,
//! the report's sizes); [`tick`] writes a number as the charts write it (axis ticks and the
//! numbers in legends, so both agree).

pub mod figure;
pub mod tick;

pub use figure::{Figure, HEIGHT, INK, Kind, Panel, ReportChart, Series, WIDE, WIDTH};
pub use tick::tick;
