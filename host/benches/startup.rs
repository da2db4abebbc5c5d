//! Benchmarks (not tests): cached start of a no-op plugin and the cost of a
//! trivial host call, each beside the native thing it replaces. Run with
//! `cargo bench -p opshost --bench startup` after tests/build-plugins.sh.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opshost::audit::AuditLog;
use opshost::config::Config;
use opshost::output::{Mode, Output};
use opshost::plugin::PluginFile;
use opshost::policy::Policy;
use opshost::runtime::{self, engine::new_engine, CompileCache, Limits, RunRequest};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> Duration {
    let samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    median(samples)
}

trait Native {
    fn call(&self, x: u64) -> u64;
}
struct Adder;
impl Native for Adder {
    #[inline(never)]
    fn call(&self, x: u64) -> u64 {
        x.wrapping_add(1)
    }
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let noop_path = root.join("target/wasm32-wasip2/release/noop.wasm");
    anyhow::ensure!(
        noop_path.exists(),
        "build the plugins first: tests/build-plugins.sh"
    );
    let scratch = tempfile::tempdir()?;
    let engine = new_engine()?;
    let cache = CompileCache::new(Some(scratch.path().join("cache")));
    let audit = Arc::new(AuditLog::open(&scratch.path().join("audit.ndjson"))?);
    let output = Arc::new(Output::new(Mode::Silent));
    let policy = Policy::default();
    let config = Arc::new(Config::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let run_once = |plugin: &PluginFile, args: &[&str], cache: &CompileCache| {
        let req = RunRequest {
            engine: &engine,
            cache,
            plugin,
            config: Arc::clone(&config),
            policy: &policy,
            allow: &[],
            args: args.iter().map(|s| s.to_string()).collect(),
            limits: Limits::default(),
            output: Arc::clone(&output),
            audit: Arc::clone(&audit),
            require_signed: false,
            version: opshost::plugin::fit::VersionCheck::unchecked(),
            mode: Default::default(),
        };
        rt.block_on(runtime::run(req))
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };

    // 1. Start of a no-op plugin: read + hash + manifest, admit, load, instantiate, run.
    let plugin = PluginFile::load(&noop_path)?;
    let uncached = time_n(5, || {
        let p = PluginFile::load(&noop_path).expect("load");
        run_once(&p, &[], &CompileCache::disabled()).expect("run");
    });
    run_once(&plugin, &[], &cache)?; // fill the cache
    let cached = time_n(200, || {
        let p = PluginFile::load(&noop_path).expect("load");
        run_once(&p, &[], &cache).expect("run");
    });
    let process_true = time_n(50, || {
        Command::new("/bin/true").status().expect("true");
    });
    let bin = root.join("target/release/opshost");
    let process_opshost = time_n(30, || {
        Command::new(&bin)
            .args([
                "run",
                noop_path.to_str().expect("utf-8 path"),
                "--audit-log",
            ])
            .arg(scratch.path().join("audit-cli.ndjson"))
            .arg("--cache-dir")
            .arg(scratch.path().join("cache"))
            .status()
            .expect("opshost");
    });

    // 2. A trivial host call (progress.advance with silent output).
    let calls: u64 = 1_000_000;
    let n_arg = calls.to_string();
    let zero = time_n(5, || {
        run_once(&plugin, &["calls", "0"], &cache).expect("run")
    });
    let many = time_n(5, || {
        run_once(&plugin, &["calls", &n_arg], &cache).expect("run")
    });
    let per_call = (many.saturating_sub(zero)).as_nanos() as f64 / calls as f64;
    let native: &dyn Native = black_box(&Adder);
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..calls * 10 {
        acc = native.call(black_box(acc ^ i));
    }
    black_box(acc);
    let native_ns = t.elapsed().as_nanos() as f64 / (calls * 10) as f64;

    println!("opshost benchmarks (median; 2-core machine, noisy, +-30%)");
    println!("| what | time | ratio |");
    println!("|---|---|---|");
    println!("| no-op plugin, first run (compile, no cache), in-process | {uncached:.2?} | {:.0}x cached |", uncached.as_secs_f64() / cached.as_secs_f64());
    println!("| no-op plugin, cached (load+instantiate+run), in-process | {cached:.2?} | {:.2}x of spawning /bin/true |", cached.as_secs_f64() / process_true.as_secs_f64());
    println!("| `opshost run noop.wasm` whole process, cached | {process_opshost:.2?} | {:.1}x of spawning /bin/true ({process_true:.2?}) |", process_opshost.as_secs_f64() / process_true.as_secs_f64());
    println!("| trivial host call (progress.advance) | {per_call:.0} ns | {:.0}x a native dyn call ({native_ns:.1} ns) |", per_call / native_ns);
    Ok(())
}
