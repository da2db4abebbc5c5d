#!/usr/bin/env python3
"""Writes a realistic AGLedger log corpus for tests/bench/redact.sh:
DIR/FILES files of about MB_EACH MB each (API JSON logs, access logs,
worker and PostgreSQL logs, Docker lines with image digests and container
ids), about 1% of lines carrying a secret (Bearer keys, URLs with
passwords, key=value secrets, JWTs) and many more with words such as
"key", "token" and "auth" around non-secrets, as real logs have.
Usage: redact-gen.py DIR [FILES] [MB_EACH]"""
import os, random, string, sys, uuid

out, files, mb_each = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10, float(sys.argv[3]) if len(sys.argv) > 3 else 10
rnd = random.Random(20261128)
os.makedirs(out, exist_ok=True)
hexs = lambda n: "%0*x" % (n, rnd.getrandbits(4 * n))
alnum = string.ascii_letters + string.digits
word = lambda n: "".join(rnd.choice(alnum) for _ in range(n))
uid = lambda: str(uuid.UUID(int=rnd.getrandbits(128)))
paths = ["/v1/mandates", "/v1/mandates/%s", "/v1/vault/entries/%s", "/health", "/health/ready", "/v1/auth/me", "/conformance", "/status"]
ua = ["opshost/0.1.0", "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31.0"]

def ts(i):
    return "2026-11-28T%02d:%02d:%02d.%03dZ" % (10 + i // 3600000 % 10, i // 60000 % 60, i // 1000 % 60, i % 1000)

def plain(i):
    k = rnd.random()
    p = rnd.choice(paths)
    if "%s" in p:
        p = p % uid()
    if k < 0.35:
        return '{"level":"info","ts":"%s","msg":"request","method":"%s","path":"%s","status":%d,"duration_ms":%.1f,"request_id":"%s","user_agent":"%s"}' % (
            ts(i), rnd.choice(["GET", "POST"]), p, rnd.choice([200, 200, 201, 404]), rnd.random() * 40, uid(), rnd.choice(ua))
    if k < 0.55:
        return '10.0.%d.%d - - [28/Nov/2026:15:20:%02d +0000] "GET %s HTTP/1.1" %d %d "-" "%s"' % (
            rnd.randint(0, 9), rnd.randint(2, 250), i % 60, p, rnd.choice([200, 304, 404]), rnd.randint(100, 90000), rnd.choice(ua))
    if k < 0.70:
        return "agledger-worker-1  | %s INFO vault entry appended mandate=mnd_%s position=%d payload_hash=%s previous_hash=%s" % (
            ts(i), hexs(16), rnd.randint(1, 5000), hexs(64), hexs(64))
    if k < 0.78:
        return 'level=info ts=%s msg="api key authenticated" key_id=key_%s role=%s auth_ms=%d' % (
            ts(i), hexs(16), rnd.choice(["platform", "reader", "writer"]), rnd.randint(1, 9))
    if k < 0.84:
        return "%s UTC [%d] LOG:  checkpoint complete: wrote %d buffers (%.1f%%); 0 WAL file(s) added, 0 removed, 1 recycled; write=%.3f s" % (
            ts(i).replace("T", " ").rstrip("Z"), rnd.randint(30, 900), rnd.randint(1, 9000), rnd.random() * 9, rnd.random() * 30)
    if k < 0.89:
        return "time=\"%s\" level=info msg=\"container %s healthy\" image=127.0.0.1:5000/agledger/agledger@sha256:%s" % (ts(i), hexs(64), hexs(64))
    if k < 0.94:
        return '{"level":"debug","ts":"%s","msg":"token refreshed","token_ttl_s":3600,"signing_key_id":"%s","algorithm":"ed25519","auth_provider":"oidc"}' % (ts(i), hexs(16))
    return "%s WARN webhook delivery to https://hooks.example.com/services/agledger retried (attempt %d, timeout_ms=5000, commit %s)" % (ts(i), rnd.randint(1, 5), hexs(40))

# A deployment has a few keys and passwords that recur (every request of a
# client carries the same key): each kind draws from a pool of 20 values.
pools = {}
def pooled(kind, make):
    pool = pools.setdefault(kind, [make() for _ in range(20)])
    return rnd.choice(pool)

def secret(i):
    k = rnd.random()
    if k < 0.25:
        return '%s GET /v1/auth/me 200 headers={"Authorization":"Bearer agl_%s"}' % (ts(i), pooled("agl", lambda: hexs(48)))
    if k < 0.45:
        return '%s ERROR reconnect postgres://agledger:%s@db.internal:5432/agledger?sslmode=require failed' % (ts(i), pooled("pg", lambda: word(24)))
    if k < 0.6:
        return "%s DEBUG config API_KEY_SECRET=%s WEBHOOK_SIGNING_SECRET=%s" % (ts(i), pooled("aks", lambda: hexs(64)), pooled("wh", lambda: word(32)))
    if k < 0.75:
        return "%s DEBUG outbound token eyJhbGciOiJIUzI1NiJ9.%s.%s" % (ts(i), pooled("jwtp", lambda: word(60)), pooled("jwts", lambda: word(43)))
    if k < 0.9:
        return "%s DEBUG session sid=%s peer=10.0.3.7" % (ts(i), pooled("sid", lambda: word(32)))
    return '%s DEBUG {"password":"%s","user":"agledger"}' % (ts(i), pooled("pw", lambda: word(20)))

n = 0
for f in range(files):
    target = int(mb_each * 1e6)
    lines, size = [], 0
    while size < target:
        line = secret(n) if rnd.random() < 0.01 else plain(n)
        lines.append(line)
        size += len(line) + 1
        n += 1
    with open(os.path.join(out, "agledger-%02d.log" % f), "w") as fh:
        fh.write("\n".join(lines) + "\n")
