//! The limits a run lives under: a wall-clock deadline (epoch
//! interruption), a memory cap per instance (ResourceLimiter) and a cap on
//! log output. Each records that it fired, so the host can say which one
//! stopped the plugin instead of reporting a bare trap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub log_bytes: u64,
    /// Audited host calls a run may make: what bounds the audit log a
    /// plugin can write (identical calls in a row are folded into one line
    /// with a count, so honest loops cost one line).
    pub host_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            memory_bytes: 512 << 20,
            log_bytes: 1 << 20,
            host_calls: 100_000,
        }
    }
}

/// Caps a guest's linear memory and tables; remembers a refused growth.
pub struct MemoryLimiter {
    max_bytes: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table of a million entries is already far past any honest plugin.
        if desired > 1_000_000 {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Bytes of log output (progress lines, guest stdout/stderr) a run may emit.
pub struct LogBudget {
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
    /// Interrupted when the budget runs out: a guest that ignores failed
    /// writes would otherwise spin until the deadline.
    engine: Option<Engine>,
}

impl LogBudget {
    pub fn new(limit: u64, engine: Option<Engine>) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            engine,
        }
    }

    /// Charge `bytes`; false (and remembered) once the budget is spent.
    pub fn charge(&self, bytes: usize) -> bool {
        let used = self.used.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        if used > self.limit {
            if !self.exceeded.swap(true, Ordering::SeqCst) {
                if let Some(engine) = &self.engine {
                    engine.increment_epoch();
                }
            }
            return false;
        }
        true
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub fn exceeded_message(&self) -> String {
        format!("log output limit reached ({} KiB)", self.limit >> 10)
    }
}

/// Interrupts the engine's running wasm once `timeout` passes, unless
/// dropped first. One small thread, no polling.
pub struct Deadline {
    cancel: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
}

impl Deadline {
    pub fn start(engine: &Engine, timeout: Duration) -> Self {
        let (cancel, wait) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = Arc::clone(&fired);
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                engine.increment_epoch();
            }
        });
        Self {
            cancel: Some(cancel),
            fired,
        }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread with Disconnected: it exits.
        self.cancel.take();
    }
}

/// Parse `90s`, `5m`, `1h30m` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 90s, 5m or 1h: {e}"))
}
