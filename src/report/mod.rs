//! What a run reports: metrics of texts, per-setting summaries with intervals, the CSV files
//! and run record, plots, and comparisons of two runs.

pub mod baseline;
pub mod compare;
pub mod degeneration;
pub mod diversity;
pub mod mauve;
pub mod metrics;
pub mod plot;
pub mod record;
pub mod summary;
pub mod tables;
