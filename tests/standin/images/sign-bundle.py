"""sign.sh's helper: WORK's pieces -> WORK/bundle.json (a Sigstore bundle
v0.3 as cosign 3 writes it) and WORK/manifest (the OCI referrer manifest
holding it, whose subject is the image sha256:HEX). Test equipment."""
import base64
import hashlib
import json
import os
import sys

work, hexd = sys.argv[1], sys.argv[2]
KIND = "application/vnd.dev.sigstore.bundle.v0.3+json"


def rd(name):
    with open(os.path.join(work, name), "rb") as f:
        return f.read()


def b64(data):
    return base64.b64encode(data).decode()


def desc(name, media):
    data = rd(name)
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


pem = rd("leaf.pem").decode()
der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
bundle = {
    "mediaType": KIND,
    "verificationMaterial": {
        "certificate": {"rawBytes": b64(der)},
        "tlogEntries": [{
            "logIndex": rd("index").decode().strip(),
            "logId": {"keyId": b64(bytes.fromhex(rd("log_id").decode().strip()))},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": rd("time").decode().strip(),
            "inclusionPromise": {"signedEntryTimestamp": rd("set.b64").decode().strip()},
            "canonicalizedBody": b64(rd("body")),
        }],
    },
    "dsseEnvelope": {
        "payload": b64(rd("payload")),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"sig": b64(rd("sig")), "keyid": ""}],
    },
}
with open(os.path.join(work, "bundle.json"), "w") as f:
    json.dump(bundle, f)

head = {}
for line in rd("head").decode().splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        head[k.lower()] = v
layer = desc("bundle.json", KIND)
layer["annotations"] = {"org.opencontainers.image.title": "sha256-%s.sigstore.json" % layer["digest"][7:]}
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": KIND,
    "config": desc("empty", "application/vnd.oci.empty.v1+json"),
    "layers": [layer],
    "subject": {"mediaType": head["content-type"], "digest": "sha256:" + hexd,
                "size": int(head["content-length"])},
}
with open(os.path.join(work, "manifest"), "w") as f:
    json.dump(manifest, f)
