//! The redaction corpus: realistic files (tests/redact-corpus/) with secrets
//! of every kind seeded in, generated here from a seeded PRNG (provider
//! tokens are built from pieces so no real-looking token is committed).
//! Asserts that no secret, nor any 16-character piece of one in any of its
//! spellings, survives in any redacted file, that the listed non-secrets
//! are kept, and that binary data is handed back untouched.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opshost_sdk::redact::{is_archive, is_binary, Redacted, Redactor, RuleSet};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn from(&mut self, alphabet: &str, n: usize) -> String {
        let a: Vec<char> = alphabet.chars().collect();
        (0..n)
            .map(|_| a[(self.next() % a.len() as u64) as usize])
            .collect()
    }
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &str = "0123456789abcdef";

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

fn b64(data: &[u8], url: bool) -> String {
    let table: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (c as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"="[..(3 - chunk.len()).min(1)].repeat(3 - chunk.len()));
        }
    }
    out
}

/// A value of `n` characters from `alphabet` holding every char of `must`.
fn with_chars(rng: &mut Rng, alphabet: &str, n: usize, must: &str) -> String {
    loop {
        let s = rng.from(alphabet, n);
        if must.chars().all(|c| s.contains(c)) {
            return s;
        }
    }
}

/// Secrets (name -> value) and plain values the templates use.
fn seeded(
    seed: u64,
) -> (
    BTreeMap<&'static str, String>,
    BTreeMap<&'static str, String>,
) {
    let mut r = Rng(seed);
    let mut s = BTreeMap::new();
    let ed25519_der = |r: &mut Rng| {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(r.bytes(32));
        b64(&der, false)
    };
    s.insert("API_KEY_SECRET", hex(&r.bytes(32)));
    s.insert("API_KEY_SECRET_PREVIOUS", hex(&r.bytes(32)));
    // One with a '/' so its JSON spelling `\/` differs.
    let vault = loop {
        let k = ed25519_der(&mut r);
        if k[21..].contains('/') {
            break k;
        }
    };
    s.insert("VAULT_SIGNING_KEY", vault);
    s.insert("VAULT_SIGNING_KEY_PREVIOUS", ed25519_der(&mut r));
    let pw_chars = format!("{ALNUM}:@/!+=-_.~^*");
    s.insert(
        "POSTGRES_PASSWORD",
        with_chars(&mut r, &pw_chars, 24, ":@/"),
    );
    s.insert("MIGRATE_PASSWORD", r.from(ALNUM, 20));
    s.insert("RAW_AT_PASSWORD", with_chars(&mut r, &pw_chars, 20, ":@"));
    s.insert("FEDERATION_PASSWORD", r.from(&format!("{ALNUM}!-_."), 18));
    s.insert("PLATFORM_KEY", format!("agl_{}", hex(&r.bytes(24))));
    s.insert("API_KEY_2", format!("agl_{}", hex(&r.bytes(24))));
    let upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let groups: Vec<String> = (0..4).map(|_| r.from(upper, 5)).collect();
    s.insert("LICENSE_KEY", format!("AGL-{}", groups.join("-")));
    s.insert("WEBHOOK_SECRET", format!("whsec_{}", r.from(ALNUM, 32)));
    s.insert("OTEL_TOKEN", r.from(ALNUM, 40));
    s.insert("SIEM_TOKEN", r.from(HEX, 32));
    s.insert("FEDERATION_KEY", b64(&r.bytes(32), false));
    let (t, b, x) = (r.from(upper, 8), r.from(upper, 10), r.from(ALNUM, 24));
    s.insert("SLACK_WEBHOOK_PATH", format!("T{t}/B{b}/{x}"));
    s.insert(
        "AWS_ACCESS_KEY",
        format!(
            "{}{}",
            ["AK", "IA"].concat(),
            r.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
    );
    s.insert(
        "AWS_SECRET_KEY",
        with_chars(&mut r, &format!("{ALNUM}+/"), 40, ""),
    );
    s.insert("SESSION_TOKEN", with_chars(&mut r, ALNUM, 32, ""));
    let payload = format!(
        r#"{{"sub":"svc-{}","iat":1790000000,"scope":"ledger:read"}}"#,
        r.from(ALNUM, 12)
    );
    s.insert(
        "JWT",
        format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
            b64(payload.as_bytes(), true),
            b64(&r.bytes(32), true)
        ),
    );
    s.insert("GITHUB_TOKEN", format!("{}_{}", "ghp", r.from(ALNUM, 36)));
    s.insert(
        "GITHUB_APP_TOKEN",
        format!("{}_{}", "ghs", r.from(ALNUM, 36)),
    );
    s.insert(
        "GITHUB_PAT",
        format!(
            "{}_pat_{}_{}",
            "github",
            r.from(ALNUM, 22),
            r.from(ALNUM, 59)
        ),
    );
    s.insert(
        "SLACK_BOT_TOKEN",
        format!(
            "{}-{}-{}-{}",
            ["xo", "xb"].concat(),
            r.from("0123456789", 12),
            r.from("0123456789", 13),
            r.from(ALNUM, 24)
        ),
    );
    s.insert("OIDC_CLIENT_SECRET", r.from(ALNUM, 32));
    s.insert(
        "S3_CREDENTIAL",
        with_chars(&mut r, &format!("{ALNUM}+/"), 28, "+"),
    );
    // A short lowercase-and-digit value: only its key name says it is secret.
    s.insert(
        "FEDERATION_AUTH",
        format!("fed-{}", r.from("abcdefghijklmnopqrstuvwxyz0123456789", 12)),
    );
    s.insert(
        "YAML_PASSWORD",
        with_chars(&mut r, &format!("{ALNUM}!-_."), 16, "!"),
    );
    let body = b64(&r.bytes(1190), false);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("b64"))
        .collect();
    s.insert("PEM_BODY", lines.join("\n"));
    let mut plain = BTreeMap::new();
    plain.insert("IMAGE_DIGEST", hex(&r.bytes(32)));
    plain.insert("GIT_SHA", hex(&r.bytes(20)));
    plain.insert("CONTAINER_ID", hex(&r.bytes(32)));
    plain.insert("FED_USER", "federation".to_string());
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        s["PEM_BODY"]
    );
    plain.insert("PEM_JSON", pem.replace('\n', "\\n"));
    plain.insert("PEM", pem);
    (s, plain)
}

fn json_spelling(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('/', "\\/")
}

fn url_spelling(v: &str) -> String {
    v.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

fn render(
    template: &str,
    secrets: &BTreeMap<&str, String>,
    plain: &BTreeMap<&str, String>,
) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").expect("closed placeholder") + i;
        let spec = &rest[i + 2..end];
        let (name, filter) = spec.split_once('|').unwrap_or((spec, ""));
        let value = secrets
            .get(name)
            .or_else(|| plain.get(name))
            .unwrap_or_else(|| panic!("unknown placeholder {name}"));
        out.push_str(&match filter {
            "" => value.clone(),
            "json" => json_spelling(value),
            "url" => url_spelling(value),
            f => panic!("unknown filter {f}"),
        });
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redact-corpus")
}

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("corpus dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            corpus_files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "keep.txt") {
            out.push(p);
        }
    }
}

/// Every 16-character piece of every spelling of a secret (the whole value
/// when shorter), with the secret's name.
fn pieces(secrets: &BTreeMap<&str, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in secrets {
        for part in value.split('\n') {
            for spelling in [part.to_string(), json_spelling(part), url_spelling(part)] {
                let b = spelling.as_bytes();
                if b.len() <= 16 {
                    out.push((name.to_string(), spelling.clone()));
                    continue;
                }
                for w in b.windows(16) {
                    if let Ok(w) = std::str::from_utf8(w) {
                        out.push((name.to_string(), w.to_string()));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn run_corpus(seed: u64) {
    let (secrets, plain) = seeded(seed);
    let rules = RuleSet::builtin().expect("builtin rules");
    let mut files = Vec::new();
    corpus_files(&corpus_dir(), &mut files);
    files.sort();
    assert!(files.len() >= 7, "corpus files missing: {files:?}");
    let inputs: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(corpus_dir())
                .expect("under corpus")
                .display()
                .to_string();
            let t = std::fs::read_to_string(p).expect("corpus file");
            (rel, render(&t, &secrets, &plain))
        })
        .collect();
    // Every seeded secret is in the corpus (else the leak check proves nothing).
    for (name, value) in &secrets {
        let first = value.split('\n').next().unwrap_or(value);
        assert!(
            inputs.iter().any(|(_, t)| t.contains(first)
                || t.contains(&json_spelling(first))
                || t.contains(&url_spelling(first))),
            "secret {name} is not used by any corpus file"
        );
    }
    let mut red = Redactor::new(&rules);
    for (path, text) in &inputs {
        red.learn(path, text.as_bytes());
    }
    let mut outputs = Vec::new();
    for (path, text) in &inputs {
        match red.redact(path, text.as_bytes()) {
            Redacted::Text(t) => outputs.push((
                path.clone(),
                String::from_utf8(t).expect("redacted text is UTF-8"),
            )),
            Redacted::Binary => panic!("{path} taken for binary"),
        }
    }
    let mut leaks = Vec::new();
    for (name, piece) in pieces(&secrets) {
        for (path, out) in &outputs {
            if out.contains(&piece) {
                let line = out.lines().find(|l| l.contains(&piece)).unwrap_or("");
                leaks.push(format!("{name} piece {piece:?} in {path}: {line}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "seed {seed}: {} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    let all: String = outputs
        .iter()
        .map(|(_, o)| o.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let keep = std::fs::read_to_string(corpus_dir().join("keep.txt")).expect("keep.txt");
    let mut lost = Vec::new();
    for line in keep.lines().skip_while(|l| l.starts_with('#')) {
        let want = render(line, &secrets, &plain);
        if !all.contains(&want) {
            lost.push(want);
        }
    }
    assert!(
        lost.is_empty(),
        "seed {seed}: non-secrets lost:\n{}\n--- output ---\n{all}",
        lost.join("\n")
    );

    // The report names rules and counts, never a secret.
    let report = red.report();
    let json = report.to_json().to_string();
    let text = report.to_text();
    for (name, piece) in pieces(&secrets) {
        assert!(
            !json.contains(&piece) && !text.contains(&piece),
            "report holds {name}"
        );
    }
    for (path, _) in &inputs {
        assert!(report.files.contains_key(path), "report lacks {path}");
    }
    let totals = report.totals();
    for rule in [
        "key-name",
        "url-password",
        "seen-elsewhere",
        "private-key-block",
        "high-entropy",
        "jwt",
    ] {
        assert!(
            totals.get(rule).copied().unwrap_or(0) > 0,
            "rule {rule} never fired: {totals:?}"
        );
    }

    // Redacting the redacted output changes nothing.
    let mut again = Redactor::new(&rules);
    for (path, out) in &outputs {
        let Redacted::Text(t) = again.redact(path, out.as_bytes()) else {
            panic!("binary")
        };
        assert_eq!(
            String::from_utf8(t).expect("utf8"),
            *out,
            "second redaction of {path} changed it"
        );
    }
}

#[test]
fn corpus_no_secret_survives_and_settings_stay() {
    // REDACT_CORPUS_SEEDS=200 for a longer hunt (200 pass, ~50 s).
    let seeds: u64 = std::env::var("REDACT_CORPUS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    for seed in (1..=seeds).chain([0xA61E_D6E5]) {
        run_corpus(seed);
    }
}

#[test]
fn binary_and_archives_are_not_rewritten() {
    let rules = RuleSet::builtin().expect("builtin rules");
    let mut red = Redactor::new(&rules);
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(b"password=hunter2hunter2 and more");
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, b'p', b'w'];
    let mut tar = vec![b'a'; 512];
    tar[257..262].copy_from_slice(b"ustar");
    let latin1 = b"caf\xe9 password=hunter2hunter2\n".to_vec();
    for (path, data) in [
        ("x.png", &png[..]),
        ("b.tar.gz", &gz[..]),
        ("c.tar", &tar[..]),
        ("l.txt", &latin1[..]),
    ] {
        red.learn(path, data);
        assert_eq!(red.redact(path, data), Redacted::Binary, "{path}");
    }
    assert!(is_archive(&gz) && is_archive(&tar) && is_archive(b"PK\x03\x04rest"));
    assert!(!is_archive(b"plain text\n") && !is_binary(b"plain text\n"));
    // A text file cut inside a multi-byte character at 8 KiB is still text.
    let mut cut = "é".repeat(5000).into_bytes();
    cut.truncate(8191);
    assert!(!is_binary(&cut));
    assert_eq!(red.report().binary.len(), 4);
}
