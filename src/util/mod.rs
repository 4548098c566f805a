//! Small pieces every layer uses.

pub mod exit;
pub mod files;
pub mod progress;
