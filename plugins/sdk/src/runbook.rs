//! The runbook engine: an operation that changes a deployment is a list of
//! named steps, each with `apply` and, where it changes something, `undo`.
//! The engine writes a journal (in a granted directory) before each step
//! and after it, undoes the applied steps in reverse when one fails, and
//! ends in a typed [`Outcome`]: done, rolled back, or degraded with the
//! exact commands that recover. A run that was killed leaves its journal;
//! the next run, holding the deployment lock (so the killed one is gone),
//! finds it and refuses, offering `--recover` (undo what was applied) or,
//! for operations whose steps may be applied again, `--resume`.
//!
//! The failure path is written once, here, not per operation.

use serde_json::{json, Value};

use crate::fs::Dir;
use crate::{describe, fail, progress, Context, Error, Result};

/// One named step. `undo` must cope with a step that was applied only in
/// part (the run died in the middle of it): it is called for the step that
/// failed or was interrupted too.
pub struct Step<C> {
    /// Stable: the journal records steps by name.
    pub name: &'static str,
    pub apply: fn(&mut C) -> Result<()>,
    pub undo: Option<fn(&mut C) -> Result<()>>,
}

/// The state an operation's steps share; saved in the journal so that a
/// later `--recover` can undo with what the killed run knew.
pub trait State: Sized {
    fn to_json(&self) -> Value;
    fn from_json(v: &Value) -> Result<Self>;
}

/// A text field of a journaled state; its absence is an error naming the
/// operation's journal and the key (for [`State::from_json`]).
pub fn text_field(state: &Value, operation: &str, key: &str) -> Result<String> {
    state[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| fail(format!("the {operation} journal has no {key}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pending,
    Applying,
    Applied,
    Undoing,
    Undone,
    UndoFailed,
}

impl Mark {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applying => "applying",
            Self::Applied => "applied",
            Self::Undoing => "undoing",
            Self::Undone => "undone",
            Self::UndoFailed => "undo-failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Applying,
            Self::Applied,
            Self::Undoing,
            Self::Undone,
            Self::UndoFailed,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Something of the step may be in place and need undoing.
    fn touched(self) -> bool {
        matches!(
            self,
            Self::Applying | Self::Applied | Self::Undoing | Self::UndoFailed
        )
    }
}

/// How an operation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every step applied.
    Done,
    /// A step failed; every applied step was undone: the deployment is as
    /// it was before the run.
    RolledBack { step: String, error: Error },
    /// A step failed and the operator asked not to undo (for inspection):
    /// the journal is kept; `recovery` undoes what was applied.
    Stopped {
        step: String,
        error: Error,
        recovery: Vec<String>,
    },
    /// A step failed and undoing failed too: the journal is kept, and
    /// `recovery` says exactly what to run.
    Degraded {
        step: String,
        error: Error,
        undo_failures: Vec<(String, Error)>,
        recovery: Vec<String>,
    },
}

impl Outcome {
    /// What happened, in words: what failed and what state things are in.
    pub fn describe(&self, operation: &str) -> String {
        match self {
            Outcome::Done => format!("{operation} completed"),
            Outcome::RolledBack { step, error } => format!(
                "{operation} failed at \"{step}\": {}. Every change was undone: the deployment is as it was before",
                describe(error)
            ),
            Outcome::Stopped {
                step,
                error,
                recovery,
            } => format!(
                "{operation} failed at \"{step}\": {}. Stopped there as asked (nothing was undone; the journal is kept). \
                 To undo what was done: {}",
                describe(error),
                recovery.join(" ; ")
            ),
            Outcome::Degraded {
                step,
                error,
                undo_failures,
                recovery,
            } => {
                let undo: Vec<String> = undo_failures
                    .iter()
                    .map(|(s, e)| format!("undoing \"{s}\" failed: {}", describe(e)))
                    .collect();
                format!(
                    "DEGRADED: {operation} failed at \"{step}\": {}; {}. The journal is kept. To recover: {}",
                    describe(error),
                    undo.join("; "),
                    recovery.join(" ; ")
                )
            }
        }
    }

    /// The outcome as the plugin's result: `Done` is Ok, the others are
    /// errors carrying [`Outcome::describe`].
    pub fn into_result(self, operation: &str) -> Result<()> {
        match self {
            Outcome::Done => Ok(()),
            failed => Err(fail(failed.describe(operation))),
        }
    }
}

/// An operation as a runbook: its steps and where its journal lives.
pub struct Runbook<C: 'static> {
    /// e.g. `restore`: names the journal and the recovery command.
    pub operation: &'static str,
    /// The command that undoes an interrupted run, for messages.
    pub recover_command: &'static str,
    pub steps: &'static [Step<C>],
    /// Forward-only clean-up once every step applied (dropping what the
    /// operation replaced): never undone; a failure is only a warning, and
    /// an interrupted run's `--recover` completes them instead of undoing.
    pub finish: &'static [Step<C>],
}

/// What an interrupted run left.
pub struct Interrupted<C> {
    pub state: C,
    pub started_at: String,
    /// The step it was in (or last finished), for messages.
    pub at: String,
    marks: Vec<Mark>,
    steps: usize,
}

impl<C> Interrupted<C> {
    /// Every step had applied: only the forward clean-up was left.
    fn completed(&self) -> bool {
        self.marks[..self.steps].iter().all(|m| *m == Mark::Applied)
    }
}

impl<C: State> Runbook<C> {
    fn journal_file(&self) -> String {
        format!(".opshost-{}.journal.json", self.operation)
    }

    fn all(&self) -> impl Iterator<Item = &Step<C>> {
        self.steps.iter().chain(self.finish)
    }

    fn write(&self, dir: &Dir, state: &C, started_at: &str, marks: &[Mark]) -> Result<()> {
        let steps: Vec<Value> = self
            .all()
            .zip(marks)
            .map(|(s, m)| json!({ "name": s.name, "state": m.as_str() }))
            .collect();
        let doc = json!({
            "operation": self.operation,
            "started_at": started_at,
            "state": state.to_json(),
            "steps": steps,
        });
        dir.write(&self.journal_file(), doc.to_string().as_bytes())
            .context(format!("writing the {} journal", self.operation))
    }

    /// The journal an interrupted run left, if any. Call it only while
    /// holding the deployment lock: then its run is gone.
    pub fn interrupted(&self, dir: &Dir) -> Result<Option<Interrupted<C>>> {
        let file = self.journal_file();
        let Ok(bytes) = dir.read(&file) else {
            return Ok(None);
        };
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
            fail(format!(
                "{file} is not readable ({e}): an interrupted {} left it; check the deployment by hand, then remove it",
                self.operation
            ))
        })?;
        let state = C::from_json(&doc["state"])?;
        let recorded = doc["steps"].as_array().cloned().unwrap_or_default();
        let marks: Vec<Mark> = self
            .all()
            .map(|step| {
                recorded
                    .iter()
                    .find(|r| r["name"] == step.name)
                    .and_then(|r| r["state"].as_str())
                    .and_then(Mark::parse)
                    .unwrap_or(Mark::Pending)
            })
            .collect();
        let at = self
            .all()
            .zip(&marks)
            .filter(|(_, m)| **m != Mark::Pending)
            .map(|(s, m)| format!("{} ({})", s.name, m.as_str()))
            .last()
            .unwrap_or_else(|| "before its first step".into());
        Ok(Some(Interrupted {
            state,
            started_at: doc["started_at"].as_str().unwrap_or_default().to_string(),
            at,
            marks,
            steps: self.steps.len(),
        }))
    }

    /// Apply every step; on a failure, undo the applied ones in reverse.
    pub fn run(&self, dir: &Dir, state: &mut C, started_at: &str) -> Result<Outcome> {
        self.run_with(dir, state, started_at, true)
    }

    /// Apply every step; on a failure, undo the applied ones in reverse
    /// when `undo_on_failure`, else stop there ([`Outcome::Stopped`]) with
    /// the journal kept for a later recovery.
    pub fn run_with(
        &self,
        dir: &Dir,
        state: &mut C,
        started_at: &str,
        undo_on_failure: bool,
    ) -> Result<Outcome> {
        let mut marks = vec![Mark::Pending; self.steps.len() + self.finish.len()];
        self.write(dir, state, started_at, &marks)?;
        self.apply_from(dir, state, started_at, &mut marks, undo_on_failure)
    }

    /// Go on with an interrupted run (`--resume`): the steps it applied
    /// stay, the one it was in is applied again (so an operation offers
    /// resume only when each of its steps may be), the rest follow; a
    /// failure then is handled as in [`Runbook::run_with`]. A run that had
    /// begun undoing can only be recovered.
    pub fn resume(
        &self,
        dir: &Dir,
        mut interrupted: Interrupted<C>,
        undo_on_failure: bool,
    ) -> Result<(Outcome, C)> {
        let mut marks = std::mem::take(&mut interrupted.marks);
        if marks[..self.steps.len()]
            .iter()
            .any(|m| matches!(m, Mark::Undoing | Mark::Undone | Mark::UndoFailed))
        {
            return Err(fail(format!(
                "the interrupted {} had begun undoing itself: it cannot be resumed; run `{}`",
                self.operation, self.recover_command
            )));
        }
        let started = interrupted.started_at.clone();
        let mut state = interrupted.state;
        let outcome = self.apply_from(dir, &mut state, &started, &mut marks, undo_on_failure)?;
        Ok((outcome, state))
    }

    /// A step as the operator sees it start: `step 2/5: stop the services`.
    fn announce(&self, index: usize, name: &str) -> String {
        format!(
            "step {}/{}: {name}",
            index + 1,
            self.steps.len() + self.finish.len()
        )
    }

    /// Apply the steps not marked applied, in order; then the clean-up.
    fn apply_from(
        &self,
        dir: &Dir,
        state: &mut C,
        started_at: &str,
        marks: &mut [Mark],
        undo_on_failure: bool,
    ) -> Result<Outcome> {
        let planning = progress::planning();
        for (i, step) in self.steps.iter().enumerate() {
            if marks[i] == Mark::Applied {
                continue;
            }
            progress::step(&self.announce(i, step.name), None);
            marks[i] = Mark::Applying;
            self.write(dir, state, started_at, marks)?;
            match (step.apply)(state) {
                Ok(()) => {
                    marks[i] = Mark::Applied;
                    self.write(dir, state, started_at, marks)?;
                }
                // A plan changed nothing, so there is nothing to undo: a step
                // that read back a simulated change is noted, the plan goes on.
                Err(error) if planning => {
                    progress::warn(&format!(
                        "plan: \"{}\" could not be simulated to its end (it reads back a change the plan did not make): {}",
                        step.name,
                        describe(&error).lines().next().unwrap_or_default()
                    ));
                    marks[i] = Mark::Applied;
                }
                Err(error) if !undo_on_failure => {
                    return Ok(Outcome::Stopped {
                        step: step.name.to_string(),
                        error,
                        recovery: vec![self.recover_command.to_string()],
                    });
                }
                Err(error) => {
                    // The first line only: the whole error ends the run.
                    let error_text = describe(&error);
                    progress::warn(&format!(
                        "\"{}\" failed: {}; undoing what was done",
                        step.name,
                        error_text.lines().next().unwrap_or_default()
                    ));
                    return self.undo_all(dir, state, started_at, marks, step.name, error);
                }
            }
        }
        self.finish_from(dir, state, started_at, marks)?;
        Ok(Outcome::Done)
    }

    /// Run the finish steps not yet applied, then forget the journal.
    fn finish_from(
        &self,
        dir: &Dir,
        state: &mut C,
        started_at: &str,
        marks: &mut [Mark],
    ) -> Result<()> {
        for (j, step) in self.finish.iter().enumerate() {
            let i = self.steps.len() + j;
            if marks[i] == Mark::Applied {
                continue;
            }
            progress::step(&self.announce(i, step.name), None);
            marks[i] = Mark::Applying;
            self.write(dir, state, started_at, marks)?;
            if let Err(e) = (step.apply)(state) {
                progress::warn(&format!("\"{}\": {}", step.name, describe(&e)));
            }
            marks[i] = Mark::Applied;
            self.write(dir, state, started_at, marks)?;
        }
        self.remove_journal(dir);
        Ok(())
    }

    /// Undo what an interrupted run applied (`--recover`).
    /// Past every step, only the clean-up is completed instead (`Done`).
    pub fn recover(&self, dir: &Dir, interrupted: Interrupted<C>) -> Result<Outcome> {
        self.recover_with_state(dir, interrupted)
            .map(|(outcome, _)| outcome)
    }

    /// [`Runbook::recover`], handing back the state as the undo or the
    /// clean-up left it (a clean-up step's problems are warnings to the
    /// engine; an operation that records them in its state can report them).
    pub fn recover_with_state(
        &self,
        dir: &Dir,
        mut interrupted: Interrupted<C>,
    ) -> Result<(Outcome, C)> {
        let at = interrupted.at.clone();
        let started = interrupted.started_at.clone();
        let completed = interrupted.completed();
        let mut marks = std::mem::take(&mut interrupted.marks);
        if completed {
            self.finish_from(dir, &mut interrupted.state, &started, &mut marks)?;
            return Ok((Outcome::Done, interrupted.state));
        }
        let outcome = self.undo_all(
            dir,
            &mut interrupted.state,
            &started,
            &mut marks,
            &at,
            fail("the run was interrupted"),
        )?;
        Ok((outcome, interrupted.state))
    }

    fn undo_all(
        &self,
        dir: &Dir,
        state: &mut C,
        started_at: &str,
        marks: &mut [Mark],
        failed_step: &str,
        error: Error,
    ) -> Result<Outcome> {
        let mut failures = Vec::new();
        for i in (0..self.steps.len()).rev() {
            if !marks[i].touched() {
                continue;
            }
            let step = &self.steps[i];
            let Some(undo) = step.undo else {
                marks[i] = Mark::Undone;
                continue;
            };
            marks[i] = Mark::Undoing;
            self.write_while_undoing(dir, state, started_at, marks);
            progress::step(&format!("undoing: {}", step.name), None);
            match undo(state) {
                Ok(()) => marks[i] = Mark::Undone,
                Err(e) => {
                    marks[i] = Mark::UndoFailed;
                    failures.push((step.name.to_string(), e));
                }
            }
            self.write_while_undoing(dir, state, started_at, marks);
        }
        if failures.is_empty() {
            self.remove_journal(dir);
            return Ok(Outcome::RolledBack {
                step: failed_step.to_string(),
                error,
            });
        }
        Ok(Outcome::Degraded {
            step: failed_step.to_string(),
            error,
            undo_failures: failures,
            recovery: vec![self.recover_command.to_string()],
        })
    }

    /// While undoing, a journal that cannot be written (a full disk) is a
    /// warning: stopping the undo would leave more to recover, not less.
    fn write_while_undoing(&self, dir: &Dir, state: &C, started_at: &str, marks: &[Mark]) {
        if let Err(e) = self.write(dir, state, started_at, marks) {
            progress::warn(&format!("{}; undoing goes on", describe(&e)));
        }
    }

    /// Forget the journal: the run ended, one way or the other.
    pub fn remove_journal(&self, dir: &Dir) {
        let _ = dir.remove(&self.journal_file());
    }
}
