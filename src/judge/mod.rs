//! Judging: turning evidence into verdicts, with no model in sight. It owns the typed evidence
//! file that measuring writes and everyone else reads (`evidence`), the statistics derived from
//! its per-record measurements (`derive`, with the attacks' scores in `attacks`: certification
//! and verification run the same code), the table of known metrics and
//! how a confidence bound is taken from each (`metric`), the statistics behind them (`stats`,
//! `clustered` for records correlated within a subject, `equivalence` for the
//! distance to the retrained reference, `aggregate`), the specification language (`spec`), the property runner and its perturbations
//! (`property`, which asks a model only through its `Oracle` trait), and the evaluation of a spec
//! into verdicts (`verdict`). It never imports candle, `model` or `crate::evidence`, so a report
//! reads, judges and verifies without the ML stack.

pub mod aggregate;
pub mod attacks;
pub mod clustered;
pub mod derive;
pub mod equivalence;
pub mod evidence;
pub mod metric;
pub mod property;
pub mod spec;
pub mod stats;
pub mod verdict;

pub use evidence::Evidence;
pub use metric::Metric;
