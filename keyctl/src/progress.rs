//! Progress on long work, drawn on standard error only when it is a terminal (indicatif
//! draws nothing otherwise, so scripts and logs see none of it).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `unit` (entries, steps) towards `len`, with rate and time left.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// The steps of a ceremony: `[pos/len] what is being done`.
pub fn steps(len: u64) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("[{pos}/{len}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}
