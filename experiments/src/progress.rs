//! Progress bars for long stages (hidden when not attached to a terminal or when asked).

use indicatif::{ProgressBar, ProgressStyle};

/// Whether colour is wanted: not when `NO_COLOR` is set to a non-empty value
/// (<https://no-color.org>).
pub fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A bar of `len` steps labelled `stage`, or a hidden one when `visible` is false.
pub fn bar(len: u64, stage: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = if colour_wanted() {
        "{prefix:>8} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} ETA {eta} {msg}"
    } else {
        "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_owned());
    bar
}
