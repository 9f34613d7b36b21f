//! Progress of the commands that can take more than a second (deid,
//! verify, release, deface, risk): one implementation for all of them.
//!
//! The library crates report `(done, total)` from their worker threads.
//! Those calls arrive out of order: the thread that finished file 6 can
//! report before the one that finished file 5. Passing each straight to
//! the bar (`set_position(5)` after `set_position(6)`) made the counter
//! jump back, and indicatif's rate estimator, fed positions that go back
//! and forth, printed rates such as "40,581.6135/s" (its `{per_sec}` also
//! prints four decimals). Here every update goes through one lock and only
//! a larger count moves the bar, and the rate is done / elapsed, printed
//! with one decimal.
//!
//! On a terminal (stderr) it is a bar; otherwise a line on stderr every
//! [`LINE_INTERVAL`] (a JSON event with `--log-format json`); `-q` turns it
//! off. It never shows a path or a value: counts only.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the line without a terminal is printed.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

enum Mode {
    Off,
    Bar(ProgressBar),
    Lines,
}

struct State {
    done: usize,
    total: usize,
    start: Instant,
    last_line: Instant,
}

/// One command's progress (see the module documentation).
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    mode: Mode,
    state: Mutex<State>,
}

impl Progress {
    /// Progress for `what` ("veil deid") counting `unit`s ("files"):
    /// a bar on a terminal, periodic lines otherwise, nothing when
    /// `quiet`.
    pub fn new(what: &'static str, unit: &'static str, quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(bar(unit))
        } else {
            Mode::Lines
        };
        let now = Instant::now();
        Progress {
            what,
            unit,
            mode,
            state: Mutex::new(State {
                done: 0,
                total: 0,
                start: now,
                last_line: now,
            }),
        }
    }

    /// `done` of `total` units are finished; callable from any thread, in
    /// any order (a smaller `done` than one already shown is ignored).
    pub fn tick(&self, done: usize, total: usize) {
        if let Mode::Off = self.mode {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if total != st.total {
            st.total = total;
            if let Mode::Bar(b) = &self.mode {
                b.set_length(total as u64);
            }
        }
        if done <= st.done {
            return;
        }
        st.done = done;
        match &self.mode {
            Mode::Bar(b) => b.set_position(done as u64),
            Mode::Lines if st.last_line.elapsed() >= LINE_INTERVAL => {
                st.last_line = Instant::now();
                self.line(&st);
            }
            _ => {}
        }
    }

    /// The work is over: the bar is drawn one last time with its final
    /// counts and left on the terminal.
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish();
        }
    }

    /// The line printed without a terminal.
    fn line(&self, st: &State) {
        let secs = st.start.elapsed().as_secs_f64();
        let rate = st.done as f64 / secs.max(1e-9);
        if crate::logging::json() {
            tracing::info!(
                target: crate::logging::PROGRESS_TARGET,
                command = self.what,
                done = st.done,
                total = st.total,
                unit = self.unit,
                per_second = (rate * 10.0).round() / 10.0,
                "progress"
            );
        } else {
            let pct = if st.total > 0 {
                100.0 * st.done as f64 / st.total as f64
            } else {
                0.0
            };
            eprintln!(
                "{}: {}/{} {} ({pct:.0}%), {rate:.1} {}/s",
                self.what, st.done, st.total, self.unit, self.unit
            );
        }
    }
}

/// The terminal bar: counts, own rate, eta.
fn bar(unit: &'static str) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {unit}  {{rate}}  eta {{eta}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let secs = s.elapsed().as_secs_f64();
            let rate = s.pos() as f64 / secs.max(1e-9);
            let _ = write!(w, "{rate:.1} {unit}/s");
        },
    );
    b.set_style(style);
    b
}
