#!/usr/bin/env python3
"""Regenerate gitleaks.tsv from gitleaks' config/gitleaks.toml (MIT, see
GITLEAKS-LICENSE). Usage: update-gitleaks.py path/to/gitleaks.toml COMMIT

One rule a line: id, min entropy (0 = none), secret group (0 = group 1 if the
regex has one, else the whole match), comma-separated keywords (lowercase),
regex. Left out: rules without a regex (file-name rules) and generic-api-key
(the engine's own key-name redactor does that job, with its keep-list).
The jwt rule's keyword "ey" matches half the words of a log ("key", "they"):
a JWT starts with base64 of '{"' so "eyj" is used instead. The curl rules'
keyword "curl" becomes "curl " (user agents say curl/8.5.0).
"""
import sys, tomllib

src, commit = sys.argv[1], sys.argv[2]
rules = tomllib.load(open(src, "rb"))["rules"]
out = [f"# gitleaks config/gitleaks.toml at {commit} (MIT, Copyright (c) 2019 Zachary Rice)"]
for r in rules:
    if "regex" not in r or r["id"] == "generic-api-key":
        continue
    kw = [k.lower() for k in r.get("keywords", [])]
    if r["id"] == "jwt":
        kw = ["eyj"]
    # "curl" is in every access log's user agent (curl/8.5.0); these rules
    # want a curl command line, which has a space after the word.
    if r["id"] in ("curl-auth-header", "curl-auth-user"):
        kw = ["curl "]
    if not kw:
        continue
    fields = [r["id"], str(r.get("entropy", 0)), str(r.get("secretGroup", 0)), ",".join(kw), r["regex"]]
    assert all("\t" not in f and "\n" not in f for f in fields), r["id"]
    out.append("\t".join(fields))
open("gitleaks.tsv", "w").write("\n".join(out) + "\n")
print(len(out) - 1, "rules")
