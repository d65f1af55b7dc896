//! Progress bars for long stages (hidden when not attached to a terminal or when asked).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `stage`, or a hidden one when `visible` is false.
pub fn bar(len: u64, stage: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_owned());
    bar
}
