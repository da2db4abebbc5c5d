//! What the operator sees while a plugin runs: a progress bar and lines on
//! a terminal, plain lines when piped, NDJSON events with `--json`, or
//! nothing (benchmarks, embedding).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Human output on stderr; bars when stderr is a terminal.
    Human,
    /// NDJSON events on stdout, one per line; the last is the result.
    Json,
    Silent,
}

/// The operator's answer to a plugin's question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    Declined,
    /// Nobody to ask (not a terminal, or `--json`) and no `--yes`.
    NoTerminal,
}

pub struct Output {
    mode: Mode,
    tty: bool,
    /// `--yes`: every question is answered yes without asking.
    assume_yes: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// `--json` progress events are throttled to a few per second.
    last_progress: Mutex<Option<Instant>>,
}

impl Output {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            tty: std::io::stderr().is_terminal(),
            assume_yes: false,
            bar: Mutex::new(None),
            last_progress: Mutex::new(None),
        }
    }

    /// Answer every question yes (`--yes`).
    pub fn assume_yes(mut self, yes: bool) -> Self {
        self.assume_yes = yes;
        self
    }

    /// Ask the operator `question` on the terminal (y/N). With `--yes` the
    /// answer is yes and the question is still shown; without a terminal
    /// to ask on, the answer is `NoTerminal`, never a silent yes.
    pub fn confirm(&self, question: &str) -> Answer {
        if self.assume_yes {
            self.info(&format!("{question} yes (--yes)"));
            return Answer::Yes;
        }
        if self.mode != Mode::Human || !std::io::stdin().is_terminal() || !self.tty {
            return Answer::NoTerminal;
        }
        let ask = || {
            eprint!("{question} [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(_) if matches!(line.trim().to_lowercase().as_str(), "y" | "yes") => Answer::Yes,
                _ => Answer::Declined,
            }
        };
        match self.bar.lock().ok().as_deref() {
            Some(Some(bar)) => bar.suspend(ask),
            _ => ask(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One NDJSON event on stdout (`--json` only).
    pub fn json_event(&self, value: serde_json::Value) {
        if self.mode == Mode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    fn line(&self, text: &str) {
        match self.bar.lock().ok().as_deref() {
            Some(Some(bar)) => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    pub fn step(&self, name: &str, total: Option<u64>) {
        match self.mode {
            Mode::Silent => {}
            Mode::Json => self.json_event(json!({"event": "step", "name": name, "total": total})),
            Mode::Human => {
                self.finish_bar();
                if self.tty {
                    let bar = match total {
                        Some(t) => ProgressBar::new(t).with_style(
                            ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} ({eta})")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        ),
                        None => ProgressBar::new_spinner(),
                    };
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    bar.set_message(name.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if let Ok(mut slot) = self.bar.lock() {
                        *slot = Some(bar);
                    }
                } else {
                    eprintln!("==> {name}");
                }
            }
        }
    }

    pub fn advance(&self, done: u64) {
        match self.mode {
            Mode::Silent => {}
            Mode::Json => {
                let Ok(mut last) = self.last_progress.lock() else {
                    return;
                };
                if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
                    *last = Some(Instant::now());
                    drop(last);
                    self.json_event(json!({"event": "progress", "done": done}));
                }
            }
            Mode::Human => {
                if let Ok(slot) = self.bar.lock() {
                    if let Some(bar) = slot.as_ref() {
                        bar.set_position(done);
                    }
                }
            }
        }
    }

    pub fn info(&self, message: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Json => self.json_event(json!({"event": "info", "message": message})),
            Mode::Human => self.line(message),
        }
    }

    pub fn warn(&self, message: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Json => self.json_event(json!({"event": "warn", "message": message})),
            Mode::Human => self.line(&format!("warning: {message}")),
        }
    }

    /// A line the guest wrote to its stdout or stderr.
    pub fn guest_line(&self, stream: &str, line: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Json => self.json_event(json!({"event": "log", "stream": stream, "line": line})),
            Mode::Human => self.line(&format!("[plugin {stream}] {line}")),
        }
    }

    pub fn finish_bar(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}
