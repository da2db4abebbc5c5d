use super::redactor::merge;
use super::*;

fn redact_one(text: &str) -> String {
    let rules = RuleSet::builtin().expect("builtin rules");
    let mut r = Redactor::new(&rules);
    r.learn("f", text.as_bytes());
    match r.redact("f", text.as_bytes()) {
        Redacted::Text(t) => String::from_utf8(t).expect("utf8"),
        Redacted::Binary => panic!("binary"),
    }
}

#[test]
fn every_builtin_regex_compiles() {
    let mut bad = Vec::new();
    for rule in rules::gitleaks().expect("tsv parses") {
        if let Err(e) = regex::bytes::RegexBuilder::new(rule.regex)
            .size_limit(50 << 20)
            .build()
        {
            bad.push(format!("{}: {e}", rule.name));
        }
    }
    for (name, _, re) in rules::OWN {
        if let Err(e) = regex::bytes::Regex::new(re) {
            bad.push(format!("{name}: {e}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn env_values_by_key_name() {
    let out = redact_one("export API_KEY_SECRET=abcdef0123456789abcdef0123456789\nPOSTGRES_PASSWORD=\"hunter2hunter\"  # db\nPASSWORD_FILE=/run/secrets/pw\nAGLEDGER_VERSION=1.3.2\n# AGLEDGER_LICENSE_MODE=offline\nTOKEN_TTL=3600\n");
    assert!(!out.contains("abcdef0123456789"), "{out}");
    assert!(!out.contains("hunter2hunter"), "{out}");
    assert!(out.contains("PASSWORD_FILE=/run/secrets/pw"), "{out}");
    assert!(out.contains("AGLEDGER_VERSION=1.3.2"), "{out}");
    assert!(out.contains("AGLEDGER_LICENSE_MODE=offline"), "{out}");
    assert!(out.contains("TOKEN_TTL=3600"), "{out}");
}

#[test]
fn url_password_with_at_and_colon() {
    let out = redact_one(
        "DATABASE_URL=postgres://agledger:p@ss:w0rd@db.internal:5432/agledger?sslmode=require\n",
    );
    assert!(!out.contains("p@ss:w0rd"), "{out}");
    assert!(!out.contains("ss:w0rd"), "{out}");
    assert!(
        out.contains("@db.internal:5432/agledger?sslmode=require"),
        "{out}"
    );
}

#[test]
fn merge_joins_overlaps() {
    let s = |start, end| Span {
        start,
        end,
        rule: 0,
    };
    assert_eq!(
        merge(vec![s(5, 9), s(0, 6), s(20, 22)], |_| false),
        vec![s(0, 9), s(20, 22)]
    );
}

#[test]
fn operator_rules() {
    let rules = RuleSet::builtin()
        .expect("builtin")
        .with_operator_rules(
            &["corp-internal-42".into()],
            &[("ticket".into(), r"TICKET-([0-9]{5})".into())],
        )
        .expect("operator rules");
    let mut r = Redactor::new(&rules);
    let Redacted::Text(out) = r.redact("a.log", b"see corp-internal-42 and TICKET-12345\n") else {
        panic!()
    };
    let out = String::from_utf8(out).expect("utf8");
    assert_eq!(
        out,
        "see [REDACTED:operator-literal] and TICKET-[REDACTED:ticket]\n"
    );
    assert!(RuleSet::builtin()
        .expect("b")
        .with_operator_rules(&["ab".into()], &[])
        .is_err());
    assert!(RuleSet::builtin()
        .expect("b")
        .with_operator_rules(&[], &[("x".into(), "(".into())])
        .is_err());
}

#[test]
fn entropy_sampling_finds_every_long_token() {
    // Tokens at every offset and length around MIN_LEN, between separators.
    let token = "Zx9Qw3Er7Ty1Ui5Op2As8Df4Gh6Jk0LmNbVcXz";
    for lead in 0..30 {
        for len in entropy::MIN_LEN..token.len() {
            let text = format!("{}{} tail words here", " ab".repeat(lead), &token[..len]);
            let mut out = Vec::new();
            entropy::Entropy { rule: 0 }.find(text.as_bytes(), &mut out);
            let want = entropy::secret_like(&token.as_bytes()[..len]);
            assert_eq!(!out.is_empty(), want, "lead {lead} len {len}: {out:?}");
        }
    }
}

#[test]
fn command_line_flags_and_prose() {
    let out = redact_one("ps: pg_dump --password Hx7kQ2pLm9 --host db.internal --verbose\nnote: the key: it is here\n");
    assert!(!out.contains("Hx7kQ2pLm9"), "{out}");
    assert!(out.contains("--host db.internal --verbose"), "{out}");
    assert!(out.contains("the key: it is here"), "{out}");
}

#[test]
fn many_distinct_secrets_stay_bounded() {
    // 20 000 distinct tokens learned (a log of unique session ids): the
    // literal automaton must build and find each one without a huge DFA.
    let rules = RuleSet::builtin().expect("builtin");
    let mut text = String::new();
    for i in 0..20_000u32 {
        text.push_str(&format!(
            "session_token=Tk{i:06}xQ9mZ{:08x}\n",
            i.wrapping_mul(2_654_435_761)
        ));
    }
    let mut r = Redactor::new(&rules);
    r.learn("a.log", text.as_bytes());
    let again = text.replace("session_token=", "seen ");
    let Redacted::Text(out) = r.redact("b.log", again.as_bytes()) else {
        panic!("binary")
    };
    let out = String::from_utf8(out).expect("utf8");
    assert_eq!(out.matches("[REDACTED:seen-elsewhere]").count(), 20_000);
}

#[test]
fn numbers_and_versions_by_hand() {
    for v in ["3600", "-1", "1.5", "30s", "512MB", "80%", "100ms"] {
        let out = redact_one(&format!("token_limit={v}\n"));
        assert!(out.contains(&format!("={v}")), "{v}: {out}");
    }
    for v in ["1.3.2", "v2.0.1-rc.1+build.5"] {
        let out = redact_one(&format!("license_release={v}\n"));
        assert!(out.contains(&format!("={v}")), "{v}: {out}");
    }
    for v in ["12ab34cd", "1.2x", "1.", "v1", "30sec1"] {
        let out = redact_one(&format!("api_token={v}\n"));
        assert!(!out.contains(&format!("={v}")), "{v}: {out}");
    }
}

#[test]
fn lowercase_settings_kept_passphrases_not() {
    let out = redact_one("auth: oidc\ntoken_mode: round-robin\nauth_phrase: correct-horse-battery-staple\napi_token: fed-memqgqgqczoc\n");
    assert!(
        out.contains("auth: oidc") && out.contains("token_mode: round-robin"),
        "{out}"
    );
    assert!(
        !out.contains("correct-horse") && !out.contains("memqgqgqczoc"),
        "{out}"
    );
}

#[test]
fn on_a_tie_the_specific_rule_names_the_redaction() {
    let at = |rule| Span {
        start: 3,
        end: 30,
        rule,
    };
    // 7 generic (say high entropy), 2 an operator's regex: 2 wins either way round.
    assert_eq!(merge(vec![at(7), at(2)], |r| r == 7), vec![at(2)]);
    assert_eq!(merge(vec![at(2), at(7)], |r| r == 7), vec![at(2)]);
    assert_eq!(merge(vec![at(2), at(9)], |r| r == 2), vec![at(9)]);
}

#[test]
fn compose_defaults_and_example_urls_teach_no_ordinary_words() {
    let rules = RuleSet::builtin().expect("builtin rules");
    let mut r = Redactor::new(&rules);
    let env = "# DATABASE_URL=postgres://user:secret@db.example.com:5432/agledger\nPOSTGRES_PASSWORD=\"agledger-db-password\"\n";
    let compose = "services:\n  postgres:\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-agledger}\n      x-agledger: 1\n# secrets go in .env\n";
    r.learn(".env", env.as_bytes());
    r.learn("compose.yml", compose.as_bytes());
    let env_out = match r.redact(".env", env.as_bytes()) {
        Redacted::Text(t) => String::from_utf8(t).expect("utf8"),
        Redacted::Binary => panic!("binary"),
    };
    let out = match r.redact("compose.yml", compose.as_bytes()) {
        Redacted::Text(t) => String::from_utf8(t).expect("utf8"),
        Redacted::Binary => panic!("binary"),
    };
    assert!(!env_out.contains("agledger-db-password"), "{env_out}");
    assert!(out.contains("${POSTGRES_PASSWORD:-agledger}"), "{out}");
    assert!(out.contains("x-agledger: 1"), "{out}");
    assert!(out.contains("# secrets go in .env"), "{out}");
}

#[test]
fn an_operator_regex_names_what_it_found() {
    let rules = RuleSet::builtin()
        .and_then(|r| {
            r.with_operator_rules(&[], &[("ticket-token".into(), "TKT-[0-9a-f]{24}".into())])
        })
        .expect("rules");
    for hex in [
        "9f8e7d6c5b4a39281706f5e4",
        "0123456789abcdef01234567",
        "a1b2c3d4e5f60718293a4b5c",
    ] {
        let text = format!("support_ticket: TKT-{hex}\n");
        let mut r = Redactor::new(&rules);
        r.learn("f", text.as_bytes());
        let Redacted::Text(out) = r.redact("f", text.as_bytes()) else {
            panic!("binary")
        };
        assert_eq!(
            String::from_utf8_lossy(&out),
            "support_ticket: [REDACTED:ticket-token]\n"
        );
    }
}
