#!/usr/bin/env bash
# Test equipment: cosign-compatible image signatures made with openssl and
# curl, so opshost's verification can be tested offline against the local
# registry. A test CA stands in for Fulcio and a local key for Rekor; the
# layout in the registry is exactly cosign's (tag sha256-<hex>.sig, one
# simple-signing layer, signature/certificate/chain/bundle annotations).
#
#   sign.sh init DIR
#       a test trust root in DIR (kept if present): fulcio-root.pem (the
#       CA to configure as fulcio_roots), fulcio-intermediate.pem (it signs
#       the leaves), rekor.pub (rekor_keys), cosign.pub/cosign.key (keys),
#       trusted_root.json (the same CA and Rekor key as Sigstore ships them)
#   sign.sh keyless DIR IMAGE@sha256:<hex> [--identity URI] [--issuer URL]
#                   [--ca DIR2] [--payload-digest sha256:<hex>] [--bad-set]
#       a keyless signature: a one-day leaf certificate for the identity
#       (SAN URI) and OIDC issuer (Fulcio extensions .1.1 and .1.8) from
#       DIR2's CA (default DIR), the payload signed with the leaf's key, a
#       hashedrekord Rekor entry with a SET signed by DIR's Rekor key.
#       --payload-digest signs a payload naming another image;
#       --bad-set signs the SET over another integratedTime.
#   sign.sh key DIR IMAGE@sha256:<hex>
#       a key-based signature with DIR/cosign.key (cosign sign --key)
#   sign.sh tamper DIR IMAGE@sha256:<hex>
#       a keyless signature whose payload was changed after signing (the
#       registry blob is the changed payload: its digest matches, the
#       signature does not)
#   sign.sh bundle DIR IMAGE@sha256:<hex> [the keyless options, --tamper]
#       the same as a cosign 3 signature: a Sigstore bundle (v0.3: DSSE
#       envelope of an in-toto statement with predicate
#       https://sigstore.dev/cosign/sign/v1, Rekor dsse entry with SET)
#       attached as an OCI referrer; the registry has no referrers API, so
#       its index goes to the fallback tag sha256-<hex> (sign-bundle.py
#       writes the JSON)
#   sign.sh unsign IMAGE@sha256:<hex>
#       delete the image's signature tag and referrers index (by digest)
#   sign.sh release DIR REGISTRY/REPO
#       keyless-sign every X.Y.Z tag of REPO as the vendor's release
#       workflow would: identity .../release.yml@refs/tags/vX.Y.Z
#   sign.sh digest REGISTRY/REPO:TAG
#       the digest the registry serves for a tag (Docker-Content-Digest)
#
# Each signing command replaces the image's signature manifest (cosign
# would append a layer). Defaults: identity
# https://github.com/agledger-ai/agledger-api/.github/workflows/release.yml@refs/tags/v0.0.0,
# issuer https://token.actions.githubusercontent.com. Needs bash, openssl,
# curl, python3 (JSON), sha256sum. Registries on 127.0.0.1/localhost only
# (plain HTTP, no auth).
set -euo pipefail

die() { echo "sign.sh: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
b64() { base64 -w0 "$1"; }

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
ACCEPT="$OCI_MANIFEST, application/vnd.docker.distribution.manifest.v2+json"
SIMPLE=application/vnd.dev.cosign.simplesigning.v1+json

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

init() {
  local dir=$1
  mkdir -p "$dir"
  cd "$dir"
  if [ ! -s fulcio-root.pem ]; then
    newkey fulcio-root.key
    openssl req -x509 -new -key fulcio-root.key -sha256 -days 3650 \
      -subj "/O=opshost-test/CN=test fulcio root $(basename "$dir")" \
      -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign \
      -set_serial "0x$(openssl rand -hex 8)" -out fulcio-root.pem
  fi
  if [ ! -s fulcio-intermediate.pem ]; then
    newkey fulcio-intermediate.key
    openssl req -new -key fulcio-intermediate.key \
      -subj "/O=opshost-test/CN=test fulcio intermediate $(basename "$dir")" -out intermediate.csr
    printf '%s\n' basicConstraints=critical,CA:TRUE,pathlen:0 keyUsage=critical,keyCertSign,cRLSign \
      extendedKeyUsage=codeSigning subjectKeyIdentifier=hash authorityKeyIdentifier=keyid > intermediate.ext
    openssl x509 -req -in intermediate.csr -CA fulcio-root.pem -CAkey fulcio-root.key -sha256 \
      -days 3650 -set_serial "0x$(openssl rand -hex 8)" -extfile intermediate.ext \
      -out fulcio-intermediate.pem 2>/dev/null
    rm -f intermediate.csr intermediate.ext
  fi
  [ -s rekor.key ] || { newkey rekor.key; openssl pkey -in rekor.key -pubout -out rekor.pub; }
  [ -s cosign.key ] || { newkey cosign.key; openssl pkey -in cosign.key -pubout -out cosign.pub; }
  # The same trust as Sigstore ships it (what cosign reads from TUF).
  printf '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":"https://rekor.test.invalid","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"%s","keyDetails":"PKIX_ECDSA_P256_SHA_256"},"logId":{"keyId":"%s"}}],"certificateAuthorities":[{"subject":{"organization":"opshost-test","commonName":"test fulcio"},"uri":"https://fulcio.test.invalid","certChain":{"certificates":[{"rawBytes":"%s"},{"rawBytes":"%s"}]}}],"ctlogs":[],"timestampAuthorities":[]}\n' \
    "$(openssl pkey -pubin -in rekor.pub -outform DER | base64 -w0)" \
    "$(openssl pkey -pubin -in rekor.pub -outform DER | openssl dgst -sha256 -binary | base64 -w0)" \
    "$(openssl x509 -in fulcio-intermediate.pem -outform DER | base64 -w0)" \
    "$(openssl x509 -in fulcio-root.pem -outform DER | base64 -w0)" > trusted_root.json
}

# IMAGE@sha256:<hex> -> REGISTRY REPO HEX
split_ref() {
  local ref=$1 name digest
  [[ $ref == *@sha256:* ]] || die "$ref is not IMAGE@sha256:<hex>"
  name=${ref%@*}; digest=${ref#*@}
  REGISTRY=${name%%/*}; REPO=${name#*/}; HEX=${digest#sha256:}
  [[ $REGISTRY == 127.* || $REGISTRY == localhost* ]] || die "only local registries: $REGISTRY"
  [[ ${#HEX} -eq 64 ]] || die "bad digest in $ref"
}

push_blob() {  # FILE -> pushes it (start an upload, then PUT the bytes)
  local digest="sha256:$(sha "$1")" location sep
  location=$(curl -fsS -o /dev/null -D - -X POST "http://$REGISTRY/v2/$REPO/blobs/uploads/" \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "location" { print $2 }') || die "cannot start a blob upload"
  [[ $location == http* ]] || location="http://$REGISTRY$location"
  [[ $location == *\?* ]] && sep='&' || sep='?'
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$1" \
    "$location${sep}digest=$digest" || die "cannot push blob $digest"
}

# WORK holds payload, sig and optional cert/chain/bundle files: push the
# signature manifest for HEX.
push_signature() {
  local work=$1
  echo -n "{\"architecture\":\"\",\"config\":{},\"created\":\"0001-01-01T00:00:00Z\",\"history\":[{\"created\":\"0001-01-01T00:00:00Z\"}],\"os\":\"\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$(sha "$work/payload")\"]}}" > "$work/config"
  push_blob "$work/config"
  push_blob "$work/payload"
  python3 - "$work" "$SIMPLE" > "$work/manifest" <<'EOF'
import hashlib, json, os, sys
work, simple = sys.argv[1], sys.argv[2]
def desc(name, media):
    data = open(os.path.join(work, name), "rb").read()
    return {"mediaType": media, "size": len(data), "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
def text(name):
    p = os.path.join(work, name)
    return open(p).read() if os.path.exists(p) else None
layer = desc("payload", simple)
notes = {"dev.cosignproject.cosign/signature": text("sig.b64")}
for key, name in [("dev.sigstore.cosign/certificate", "leaf.pem"),
                  ("dev.sigstore.cosign/chain", "chain.pem"),
                  ("dev.sigstore.cosign/bundle", "bundle.json")]:
    if text(name) is not None:
        notes[key] = text(name)
layer["annotations"] = notes
print(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": desc("config", "application/vnd.oci.image.config.v1+json"),
                  "layers": [layer]}))
EOF
  curl -fsS -o /dev/null -X PUT -H "Content-Type: $OCI_MANIFEST" --data-binary @"$work/manifest" \
    "http://$REGISTRY/v2/$REPO/manifests/sha256-$HEX.sig" || die "cannot push the signature manifest"
}

payload() {  # DIGEST -> the simple-signing payload on stdout
  printf '{"critical":{"identity":{"docker-reference":"%s"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
    "$REGISTRY/$REPO" "$1"
}

# Options shared by the keyless layouts -> IDENTITY ISSUER CA SIGNED_DIGEST BAD_SET TAMPER
keyless_options() {
  IDENTITY="https://github.com/agledger-ai/agledger-api/.github/workflows/release.yml@refs/tags/v0.0.0"
  ISSUER="https://token.actions.githubusercontent.com" CA=$1 SIGNED_DIGEST="" BAD_SET=0 TAMPER=0
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --identity) IDENTITY=$2; shift 2 ;;
      --issuer) ISSUER=$2; shift 2 ;;
      --ca) CA=$2; shift 2 ;;
      --payload-digest) SIGNED_DIGEST=$2; shift 2 ;;
      --bad-set) BAD_SET=1; shift ;;
      --tamper) TAMPER=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
}

# WORK DIR: a fresh leaf key and a one-day certificate for IDENTITY and
# ISSUER from CA's intermediate (WORK/leaf.key, leaf.pem, chain.pem).
make_leaf() {
  local work=$1 dir=$2
  [ -s "$dir/rekor.key" ] && [ -s "$CA/fulcio-intermediate.key" ] || die "run 'sign.sh init' for $dir (and $CA) first"
  newkey "$work/leaf.key"
  openssl req -new -key "$work/leaf.key" -subj "/O=sigstore.dev" -out "$work/leaf.csr"
  {
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=codeSigning"
    echo "subjectAltName=critical,URI:$IDENTITY"
    echo "1.3.6.1.4.1.57264.1.1=DER:$(printf %s "$ISSUER" | od -An -tx1 | tr -d ' \n')"
    echo "1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:$ISSUER"
  } > "$work/leaf.ext"
  openssl x509 -req -in "$work/leaf.csr" -CA "$CA/fulcio-intermediate.pem" -CAkey "$CA/fulcio-intermediate.key" \
    -sha256 -days 1 -set_serial "0x$(openssl rand -hex 8)" -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null
  cat "$CA/fulcio-intermediate.pem" "$CA/fulcio-root.pem" > "$work/chain.pem"
}

# WORK DIR: a Rekor entry for WORK/body signed with DIR's Rekor key ->
# WORK/time, index, log_id, set.b64 (BAD_SET: the SET covers another time).
rekor_entry() {
  local work=$1 dir=$2 body time index log_id
  body=$(b64 "$work/body"); time=$(date +%s); index=$((RANDOM * 1000 + RANDOM))
  log_id=$(openssl pkey -pubin -in "$dir/rekor.pub" -outform DER | sha256sum | cut -d' ' -f1)
  printf '{"body":"%s","integratedTime":%s,"logID":"%s","logIndex":%s}' \
    "$body" "$((time + BAD_SET))" "$log_id" "$index" > "$work/set-input"
  openssl dgst -sha256 -sign "$dir/rekor.key" -out "$work/set" "$work/set-input"
  b64 "$work/set" > "$work/set.b64"
  echo "$time" > "$work/time"; echo "$index" > "$work/index"; echo "$log_id" > "$work/log_id"
}

keyless() {
  local dir=$1 ref=$2; shift 2
  keyless_options "$dir" "$@"
  split_ref "$ref"
  local work; work=$(mktemp -d); trap "rm -rf '$work'" EXIT
  payload "${SIGNED_DIGEST:-sha256:$HEX}" > "$work/payload"
  make_leaf "$work" "$dir"
  openssl dgst -sha256 -sign "$work/leaf.key" -out "$work/sig" "$work/payload"
  b64 "$work/sig" > "$work/sig.b64"
  # The Rekor entry (hashedrekord) and its signed entry timestamp.
  printf '{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"%s"}},"signature":{"content":"%s","publicKey":{"content":"%s"}}}}' \
    "$(sha "$work/payload")" "$(cat "$work/sig.b64")" "$(b64 "$work/leaf.pem")" > "$work/body"
  rekor_entry "$work" "$dir"
  printf '{"SignedEntryTimestamp":"%s","Payload":{"body":"%s","integratedTime":%s,"logIndex":%s,"logID":"%s"}}' \
    "$(cat "$work/set.b64")" "$(b64 "$work/body")" "$(cat "$work/time")" "$(cat "$work/index")" "$(cat "$work/log_id")" > "$work/bundle.json"
  if [ "$TAMPER" = 1 ]; then
    # Changed after signing: the blob is what the registry serves, so its
    # digest matches; the signature does not.
    sed -i 's/"optional":null/"optional":{"note":"changed after signing"}/' "$work/payload"
  fi
  push_signature "$work"
  rm -rf "$work"
}

# cosign 3's layout: a Sigstore bundle (v0.3, DSSE envelope of an in-toto
# statement, Rekor dsse entry with SET) attached as an OCI referrer; this
# registry has no referrers API, so the index goes to the tag sha256-<hex>.
bundle() {
  local dir=$1 ref=$2; shift 2
  keyless_options "$dir" "$@"
  split_ref "$ref"
  local work; work=$(mktemp -d); trap "rm -rf '$work'" EXIT
  local signed=${SIGNED_DIGEST:-sha256:$HEX} type=application/vnd.in-toto+json
  printf '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"%s","digest":{"sha256":"%s"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}' \
    "$REGISTRY/$REPO" "${signed#sha256:}" > "$work/payload"
  make_leaf "$work" "$dir"
  { printf 'DSSEv1 %d %s %d ' ${#type} "$type" "$(stat -c %s "$work/payload")"; cat "$work/payload"; } > "$work/pae"
  openssl dgst -sha256 -sign "$work/leaf.key" -out "$work/sig" "$work/pae"
  printf '{"apiVersion":"0.0.1","kind":"dsse","spec":{"envelopeHash":{"algorithm":"sha256","value":"%s"},"payloadHash":{"algorithm":"sha256","value":"%s"},"signatures":[{"signature":"%s","verifier":"%s"}]}}' \
    "$(sha "$work/pae")" "$(sha "$work/payload")" "$(b64 "$work/sig")" "$(b64 "$work/leaf.pem")" > "$work/body"
  rekor_entry "$work" "$dir"
  if [ "$TAMPER" = 1 ]; then
    sed -i 's/"predicate":{}/"predicate":{"note":"changed after signing"}/' "$work/payload"
  fi
  # The image's own manifest descriptor, for the referrer's subject.
  curl -fsS -I -H "Accept: $ACCEPT" "http://$REGISTRY/v2/$REPO/manifests/sha256:$HEX" | tr -d '\r' > "$work/head" \
    || die "no manifest sha256:$HEX in $REGISTRY/$REPO"
  printf '{}' > "$work/empty"
  python3 "$(dirname "${BASH_SOURCE[0]}")/sign-bundle.py" "$work" "$HEX" || die "cannot write the bundle"
  push_blob "$work/empty"
  push_blob "$work/bundle.json"
  local manifest="sha256:$(sha "$work/manifest")"
  curl -fsS -o /dev/null -X PUT -H "Content-Type: $OCI_MANIFEST" --data-binary @"$work/manifest" \
    "http://$REGISTRY/v2/$REPO/manifests/$manifest" || die "cannot push the bundle manifest"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"%s","size":%s,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","annotations":{"dev.sigstore.bundle.content":"dsse-envelope","dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1"}}]}' \
    "$OCI_MANIFEST" "$manifest" "$(stat -c %s "$work/manifest")" > "$work/index"
  curl -fsS -o /dev/null -X PUT -H "Content-Type: application/vnd.oci.image.index.v1+json" --data-binary @"$work/index" \
    "http://$REGISTRY/v2/$REPO/manifests/sha256-$HEX" || die "cannot push the referrers index"
  rm -rf "$work"
}

key() {
  local dir=$1 ref=$2
  split_ref "$ref"
  [ -s "$dir/cosign.key" ] || die "run 'sign.sh init $dir' first"
  local work; work=$(mktemp -d); trap "rm -rf '$work'" EXIT
  payload "sha256:$HEX" > "$work/payload"
  openssl dgst -sha256 -sign "$dir/cosign.key" -out "$work/sig" "$work/payload"
  b64 "$work/sig" > "$work/sig.b64"
  push_signature "$work"
  rm -rf "$work"
}

unsign() {
  split_ref "$1"
  local tag digest
  for tag in "sha256-$HEX.sig" "sha256-$HEX"; do
    digest=$(curl -fsS -I -H "Accept: $ACCEPT, application/vnd.oci.image.index.v1+json" \
      "http://$REGISTRY/v2/$REPO/manifests/$tag" 2>/dev/null \
      | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }') || true
    [ -n "$digest" ] || continue   # not there
    curl -fsS -o /dev/null -X DELETE "http://$REGISTRY/v2/$REPO/manifests/$digest" || die "cannot delete $tag ($digest)"
  done
}

digest_of() {  # REGISTRY/REPO:TAG -> the manifest digest the registry serves
  local name=${1%:*} tag=${1##*:}
  curl -fsS -I -H "Accept: $ACCEPT" "http://${name%%/*}/v2/${name#*/}/manifests/$tag" \
    | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}

release() {
  local dir=$1 name=$2 v digest n=0
  for v in $(curl -fsS "http://${name%%/*}/v2/${name#*/}/tags/list" \
      | python3 -c 'import json, re, sys; print(" ".join(t for t in json.load(sys.stdin).get("tags") or [] if re.fullmatch(r"[0-9]+[.][0-9]+[.][0-9]+", t)))'); do
    digest=$(digest_of "$name:$v")
    [ -n "$digest" ] || die "no digest for $name:$v"
    keyless "$dir" "$name@$digest" \
      --identity "https://github.com/agledger-ai/agledger-api/.github/workflows/release.yml@refs/tags/v$v"
    n=$((n + 1))
  done
  echo "==> signed $n release(s) of $name (keyless, test trust root $dir)"
}

case "${1:-}" in
  init) [ $# -eq 2 ] || die "usage: sign.sh init DIR"; (init "$2") ;;
  keyless) [ $# -ge 3 ] || die "usage: sign.sh keyless DIR IMAGE@sha256:<hex> [options]"; shift; keyless "$@" ;;
  key) [ $# -eq 3 ] || die "usage: sign.sh key DIR IMAGE@sha256:<hex>"; key "$2" "$3" ;;
  tamper) [ $# -eq 3 ] || die "usage: sign.sh tamper DIR IMAGE@sha256:<hex>"; keyless "$2" "$3" --tamper ;;
  bundle) [ $# -ge 3 ] || die "usage: sign.sh bundle DIR IMAGE@sha256:<hex> [options]"; shift; bundle "$@" ;;
  unsign) [ $# -eq 2 ] || die "usage: sign.sh unsign IMAGE@sha256:<hex>"; unsign "$2" ;;
  release) [ $# -eq 3 ] || die "usage: sign.sh release DIR REGISTRY/REPO"; release "$2" "$3" ;;
  digest) [ $# -eq 2 ] || die "usage: sign.sh digest REGISTRY/REPO:TAG"; digest_of "$2" ;;
  *) sed -n '2,47p' "$0"; exit 2 ;;
esac
