//! What to run: the experiment file, the grid of settings it expands to, and the limits
//! checked before any work.

pub mod experiment;
pub mod grid;
pub mod limits;
