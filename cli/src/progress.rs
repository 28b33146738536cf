//! A progress bar on stderr for long encodes and decodes: seconds of audio done out of the
//! total, real-time factor, ETA. Drawn only when stderr is a terminal and not `-q`, so that logs
//! and pipes see nothing of it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::log::{Level, enabled};

/// Below this much audio the bar would only flicker.
const MIN_SECONDS: f64 = 10.0;

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    total_s: Option<f64>,
}

impl Progress {
    /// A bar over `total_s` seconds of audio (a spinner when the length is unknown).
    pub fn new(total_s: Option<f64>) -> Self {
        let show = std::io::stderr().is_terminal()
            && enabled(Level::Normal)
            && total_s.is_none_or(|t| t >= MIN_SECONDS);
        let bar = show.then(|| {
            let bar = match total_s {
                Some(t) => {
                    let bar = ProgressBar::new((t * 1000.0).round() as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{elapsed_precise} [{bar:30}] {msg} (ETA {eta})",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")
                            .expect("a valid template"),
                    );
                    bar
                }
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            start: Instant::now(),
            total_s,
        }
    }

    /// `done_s` seconds of audio are done.
    pub fn set(&self, done_s: f64) {
        let Some(bar) = &self.bar else {
            return;
        };
        let rtf = done_s / self.start.elapsed().as_secs_f64().max(1e-9);
        let of = self.total_s.map_or(String::new(), |t| format!(" / {t:.1}"));
        bar.set_message(format!("{done_s:.1}{of} s of audio, {rtf:.1}x real time"));
        bar.set_position((done_s * 1000.0).round() as u64);
    }

    /// Removes the bar (the summary line follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
