//! The certifier: evidence about a model measured against the original and, where one exists, a
//! model retrained without the forget set — utility and memorisation metrics, membership
//! inference, statistics with confidence intervals, influence — and the specifications that turn
//! evidence into verdicts. It reads models and data and never changes them; it never imports
//! `unlearn` (it judges a model, whoever made it).

pub mod metric;
pub mod oracle;
pub mod property;
pub mod spec;
pub mod stats;
pub mod verdict;
