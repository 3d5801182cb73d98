//! A progress bar on standard error while long files are read, only when standard error is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rollcall::Progress;
use std::cell::RefCell;
use std::io::IsTerminal;

/// Draws one bar per file.
pub struct Bar {
    current: RefCell<Option<ProgressBar>>,
}

impl Bar {
    /// A bar when standard error is a terminal; `None` otherwise (pipes, CI, files).
    pub fn for_terminal() -> Option<Bar> {
        std::io::stderr().is_terminal().then(|| Bar {
            current: RefCell::new(None),
        })
    }
}

impl Progress for Bar {
    fn file_started(&self, file: &str, bytes: Option<u64>) {
        let bar = ProgressBar::with_draw_target(bytes, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg:>20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(file.to_string());
        *self.current.borrow_mut() = Some(bar);
    }

    fn advanced(&self, bytes: u64) {
        if let Some(bar) = self.current.borrow().as_ref() {
            bar.set_position(bytes);
        }
    }

    fn file_finished(&self) {
        if let Some(bar) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}
