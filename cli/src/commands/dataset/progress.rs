//! Progress of a tokenize job: a bar on a terminal (items, hours of audio, real-time factor,
//! ETA); on a log file or pipe, a plain line every [`LOG_EVERY`] instead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_dataset::Observer;
use tessera_dataset::marker::{FailedItem, ShardDone};

const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: Option<ProgressBar>,
    log: bool,
    state: Mutex<State>,
}

struct State {
    start: Instant,
    last_log: Instant,
    total: usize,
    items: usize,
    failed: usize,
    seconds: f64,
}

impl Progress {
    /// `terminal`: draw a bar; otherwise `log` decides whether plain lines are printed.
    pub fn new(terminal: bool, log: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} items  {msg}  ETA {eta}")
                    .expect("valid template"),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            log: log && !terminal,
            state: Mutex::new(State {
                start: now,
                last_log: now,
                total: 0,
                items: 0,
                failed: 0,
                seconds: 0.0,
            }),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(s: &State) -> String {
        let elapsed = s.start.elapsed().as_secs_f64();
        format!(
            "{:.2} h of audio, {:.1}x real time, {} failed",
            s.seconds / 3600.0,
            s.seconds / elapsed.max(1e-9),
            s.failed
        )
    }
}

impl Observer for Progress {
    fn start(&self, _shards: &[usize], items: usize) {
        let mut s = self.state.lock().expect("progress lock");
        s.total = items;
        if let Some(bar) = &self.bar {
            bar.set_length(items as u64);
        }
    }

    fn skipped(&self, done: &ShardDone) {
        let mut s = self.state.lock().expect("progress lock");
        s.total = s.total.saturating_sub(done.items);
        if let Some(bar) = &self.bar {
            bar.set_length(s.total as u64);
            bar.println(format!("shard {} already done, skipped", done.shard));
        } else if self.log {
            eprintln!("shard {} already done, skipped", done.shard);
        }
    }

    fn item(&self, result: Result<f64, &FailedItem>) {
        let mut s = self.state.lock().expect("progress lock");
        s.items += 1;
        match result {
            Ok(seconds) => s.seconds += seconds,
            Err(f) => {
                s.failed += 1;
                let msg = format!("failed: {}: {}", f.path, f.reason);
                match &self.bar {
                    Some(bar) => bar.println(msg),
                    None if self.log => eprintln!("{msg}"),
                    None => {}
                }
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(s.items as u64);
            bar.set_message(Self::line(&s));
        } else if self.log && s.last_log.elapsed() >= LOG_EVERY {
            s.last_log = Instant::now();
            let elapsed = s.start.elapsed().as_secs_f64();
            let eta = if s.items > 0 {
                elapsed / s.items as f64 * (s.total.saturating_sub(s.items)) as f64
            } else {
                0.0
            };
            eprintln!(
                "{}/{} items, {}, ETA {:.0} s",
                s.items,
                s.total,
                Self::line(&s),
                eta
            );
        }
    }

    fn shard_done(&self, done: &ShardDone) {
        let msg = format!(
            "shard {} done: {} items, {} failed",
            done.shard, done.encoded, done.failed
        );
        if let Some(bar) = &self.bar {
            bar.println(msg);
        } else if self.log {
            eprintln!("{msg}");
        }
    }
}
