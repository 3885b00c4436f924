//! Progress on stderr in three modes: an indicatif bar (only when stderr is a terminal), JSON
//! lines for machines, or nothing. Results always go to stdout.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    Bar,
    Jsonl,
    Off,
}

/// A progress reporter over `total` units of work.
pub struct Progress {
    bar: Option<ProgressBar>,
    jsonl: bool,
    task: String,
    total: u64,
    done: u64,
}

impl Progress {
    pub fn new(mode: ProgressMode, task: &str, total: u64) -> Self {
        let bar = (mode == ProgressMode::Bar && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(task.to_string());
            b
        });
        Progress {
            bar,
            jsonl: mode == ProgressMode::Jsonl,
            task: task.to_string(),
            total,
            done: 0,
        }
    }

    /// Advances by `n` units with a short status message.
    pub fn inc(&mut self, n: u64, msg: &str) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
            b.inc(n);
        } else if self.jsonl {
            let line = serde_json::json!({"task": self.task, "done": self.done, "total": self.total, "msg": msg});
            eprintln!("{line}");
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
