//! The measured work, shared by the plugin and the native binary: build the
//! rules, then per round one bundle's two passes over every file (learn,
//! then redact), timed separately. Best and median round are reported.
use std::time::Instant;

use opshost_sdk::redact::{Redacted, Redactor, RuleSet};

pub struct Figures {
    pub bytes: u64,
    pub files: usize,
    pub rules_ms: f64,
    /// Seconds per round for learn, redact, and both.
    pub learn: Vec<f64>,
    pub redact: Vec<f64>,
    pub total: Vec<f64>,
    pub redactions: u64,
}

pub fn run(files: &[(String, Vec<u8>)], rounds: usize) -> Result<Figures, String> {
    let t = Instant::now();
    let rules = RuleSet::builtin()?;
    let rules_ms = t.elapsed().as_secs_f64() * 1e3;
    let bytes = files.iter().map(|(_, d)| d.len() as u64).sum();
    let mut f = Figures {
        bytes,
        files: files.len(),
        rules_ms,
        learn: Vec::new(),
        redact: Vec::new(),
        total: Vec::new(),
        redactions: 0,
    };
    for _ in 0..rounds {
        let mut r = Redactor::new(&rules);
        let t0 = Instant::now();
        for (path, data) in files {
            r.learn(path, data);
        }
        let t1 = Instant::now();
        let mut out_bytes = 0usize;
        for (path, data) in files {
            if let Redacted::Text(t) = r.redact(path, data) {
                out_bytes += t.len();
            }
        }
        let t2 = Instant::now();
        // Keep the output "used" so nothing is optimised away.
        if out_bytes == 0 && bytes > 0 {
            return Err("every file was taken for binary: not a log corpus".into());
        }
        f.learn.push((t1 - t0).as_secs_f64());
        f.redact.push((t2 - t1).as_secs_f64());
        f.total.push((t2 - t0).as_secs_f64());
        f.redactions = r.report().totals().values().sum();
    }
    Ok(f)
}

pub fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One JSON object line with MB/s (10^6 bytes per second) figures.
pub fn json(side: &str, f: &Figures) -> String {
    let mbs = |s: f64| f.bytes as f64 / 1e6 / s;
    format!(
        "{{\"side\":\"{side}\",\"files\":{},\"mb\":{:.1},\"rules_ms\":{:.1},\"rounds\":{},\"redactions\":{},\
\"learn_best_mbs\":{:.1},\"redact_best_mbs\":{:.1},\"total_best_mbs\":{:.1},\
\"learn_median_mbs\":{:.1},\"redact_median_mbs\":{:.1},\"total_median_mbs\":{:.1}}}",
        f.files,
        f.bytes as f64 / 1e6,
        f.rules_ms,
        f.total.len(),
        f.redactions,
        mbs(best(&f.learn)),
        mbs(best(&f.redact)),
        mbs(best(&f.total)),
        mbs(median(&f.learn)),
        mbs(median(&f.redact)),
        mbs(median(&f.total)),
    )
}

/// Per stage of the search, MB/s over every file (after one warm-up).
pub fn stages(side: &str, files: &[(String, Vec<u8>)]) -> Result<String, String> {
    let rules = RuleSet::builtin()?;
    let mut sum: Vec<(&str, f64)> = Vec::new();
    for (_, data) in files {
        let _ = opshost_sdk::redact::bench_stages(&rules, data);
    }
    for (_, data) in files {
        for (i, (name, secs)) in opshost_sdk::redact::bench_stages(&rules, data)
            .into_iter()
            .enumerate()
        {
            if sum.len() <= i {
                sum.push((name, 0.0));
            }
            sum[i].1 += secs;
        }
    }
    let bytes: usize = files.iter().map(|(_, d)| d.len()).sum();
    let parts: Vec<String> = sum
        .iter()
        .map(|(n, s)| format!("\"{n}\":{:.0}", bytes as f64 / 1e6 / s))
        .collect();
    Ok(format!("{{\"side\":\"{side}\",{}}}", parts.join(",")))
}
