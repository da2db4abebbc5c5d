//! progress: steps, counts and log lines from the plugin to the operator.
//! Not a grantable capability (it reaches only the operator's own output),
//! but every line counts against the run's log budget.

use super::bindings::opshost::plugin::progress::{Confirmation, Host};
use crate::caps::HostState;
use crate::output::Answer;

impl HostState {
    /// Charge `bytes` of output to the log budget; past it the plugin stops.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        if self.run.log_budget.charge(bytes) {
            Ok(())
        } else {
            Err(wasmtime::Error::msg(self.run.log_budget.exceeded_message()))
        }
    }
}

impl Host for HostState {
    async fn step(&mut self, name: String, total: Option<u64>) -> wasmtime::Result<()> {
        self.charge(name.len())?;
        self.run.gate.step(&name);
        self.run.output.step(&name, total);
        Ok(())
    }

    async fn advance(&mut self, done: u64) -> wasmtime::Result<()> {
        self.run.output.advance(done);
        Ok(())
    }

    async fn info(&mut self, message: String) -> wasmtime::Result<()> {
        self.charge(message.len())?;
        self.run.output.info(&message);
        Ok(())
    }

    async fn confirm(&mut self, question: String) -> wasmtime::Result<Confirmation> {
        self.charge(question.len())?;
        // A plan changes nothing, so it needs no one's consent: it answers
        // yes to see what the run would do next.
        let answer = if self.run.gate.mode() == crate::gate::Mode::Plan {
            Answer::Yes
        } else {
            self.run.output.confirm(&question)
        };
        // The answer is part of the record: who agreed to what.
        let outcome = match answer {
            Answer::Yes => "ok",
            Answer::Declined => "declined",
            Answer::NoTerminal => "no-terminal",
        };
        self.run
            .event("progress", "confirm", outcome, Some(&question))
            .map_err(|e| wasmtime::Error::msg(format!("{e:#}")))?;
        // An audited call: it counts against the budget like the others.
        if let Err(super::CapError::Trap(e)) = self.run.count_call("progress", "confirm") {
            return Err(e);
        }
        Ok(match answer {
            Answer::Yes => Confirmation::Yes,
            Answer::Declined => Confirmation::Declined,
            Answer::NoTerminal => Confirmation::NoTerminal,
        })
    }

    async fn planning(&mut self) -> wasmtime::Result<bool> {
        Ok(self.run.gate.mode() == crate::gate::Mode::Plan)
    }

    async fn warn(&mut self, message: String) -> wasmtime::Result<()> {
        self.charge(message.len())?;
        self.run.gate.note(&message);
        self.run.output.warn(&message);
        Ok(())
    }
}
