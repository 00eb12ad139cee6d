#!/usr/bin/env bash
# trustd end-to-end demo on the embedded defaults. Everything lives under demo-out/ (keys,
# config dirs, store): the host's /etc/rkt and /var/lib/rkt are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
RKT="$PWD/.venv/bin/rkt"
OUT="$PWD/demo-out"
rm -rf "$OUT" && mkdir -p "$OUT"/{gnupg,image/rootfs/bin,system-config,local-config,data}
chmod 700 "$OUT/gnupg"
FLAGS=(--system-config="$OUT/system-config" --local-config="$OUT/local-config" --dir="$OUT/data")
install -m 0644 trustd/shared/data/policy/default.toml "$OUT/system-config/policy.toml"   # the shipped policy, unchanged
PREFIX="demo.trustd.test/hello"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rkt() { echo "\$ rkt $*" >&2; "$RKT" "${FLAGS[@]}" "$@"; }
gpg_() { gpg --homedir "$OUT/gnupg" --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }

step "1. A demo signing key (made by real gpg; development material, never trust it elsewhere)"
gpg_ --quick-gen-key "trustd demo signer <demo@trustd.test>" ed25519 sign 1y
FPR=$(gpg_ --with-colons --list-keys demo@trustd.test | awk -F: '/^fpr/{print $10; exit}')
gpg_ --armor --export "$FPR" > "$OUT/demo-signer.asc"
echo "key $FPR"

step "2. A small demo image (an appc ACI: manifest + rootfs) and its detached signature"
cat > "$OUT/image/manifest" <<JSON
{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "$PREFIX",
 "labels": [{"name": "version", "value": "1.0.0"}, {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"}],
 "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"}}
JSON
cp /bin/busybox "$OUT/image/rootfs/bin/busybox"   # Debian's busybox-static
for applet in sh echo cat grep hostname id; do ln -s busybox "$OUT/image/rootfs/bin/$applet"; done
cat > "$OUT/image/rootfs/bin/hello" <<'SH'
#!/bin/sh
echo "hello from a verified image, running as $(id -u) on $(hostname)"
grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status
exit 3
SH
chmod 755 "$OUT/image/rootfs/bin/hello"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$OUT/image" -czf "$OUT/hello.aci" manifest rootfs
gpg_ --armor --detach-sign --local-user "$FPR" --output "$OUT/hello.aci.asc" "$OUT/hello.aci"
ls -l "$OUT/hello.aci" "$OUT/hello.aci.asc"

step "3. Before any trust: verification is refused (exit 254)"
if rkt trust verify "$OUT/hello.aci"; then echo "UNEXPECTED: verified without trust"; exit 1; fi

step "4. Root trust must be explicit (rkt's refusal, exit 254)"
if rkt trust "$OUT/demo-signer.asc"; then echo "UNEXPECTED"; exit 1; fi

step "5. Trust the demo key for the demo prefix only"
rkt trust --prefix "$PREFIX" --skip-fingerprint-review "$OUT/demo-signer.asc"
rkt trust list

step "6. Verification succeeds"
rkt trust verify "$OUT/hello.aci"

step "7. A tampered copy (same name, one file changed, original signature) is refused (exit 254)"
printf '#!/bin/sh\necho "hello from a TAMPERED image"\n' > "$OUT/image/rootfs/bin/hello"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$OUT/image" -czf "$OUT/tampered.aci" manifest rootfs
if rkt trust verify --signature "$OUT/hello.aci.asc" "$OUT/tampered.aci"; then
  echo "UNEXPECTED: tampered image verified"; exit 1
fi

step "8. The key does not leak to a sibling name: demo.trustd.test/hellox (whole path segments)"
sed "s#\"$PREFIX\"#\"${PREFIX}x\"#" "$OUT/image/manifest" > "$OUT/image/manifest.x"
mv "$OUT/image/manifest.x" "$OUT/image/manifest"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$OUT/image" -czf "$OUT/hellox.aci" manifest rootfs
gpg_ --armor --detach-sign --local-user "$FPR" --output "$OUT/hellox.aci.asc" "$OUT/hellox.aci"
if rkt trust verify "$OUT/hellox.aci"; then echo "UNEXPECTED: prefix leaked"; exit 1; fi

step "9. Publish the image over HTTPS with appc discovery (a private network namespace, port 443)"
SITE="$OUT/site/demo.trustd.test"
mkdir -p "$SITE/hello" "$SITE/images/demo.trustd.test"
cat > "$SITE/hello/index.html" <<HTML
<meta name="ac-discovery" content="demo.trustd.test https://demo.trustd.test/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="demo.trustd.test https://demo.trustd.test/pubkeys.asc">
HTML
cp "$OUT/hello.aci" "$SITE/images/demo.trustd.test/hello-1.0.0-linux-amd64.aci"
cp "$OUT/hello.aci.asc" "$SITE/images/demo.trustd.test/hello-1.0.0-linux-amd64.aci.asc"
cp "$OUT/demo-signer.asc" "$SITE/pubkeys.asc"
chmod -R a+rX "$OUT"
find "$OUT/site" -type f | sed "s#$OUT/site/#  https://#"

step "10. Root prepares the shared store (group rkt, setgid), as rkt's setup-data-dir.sh did"
rkt image list
ls -ld "$OUT/data" "$OUT/data/cas"

step "11. An unprivileged user in group rkt fetches the image by name: discovery, signature first, verify, store"
getent passwd trustd-demo >/dev/null || useradd --system --gid rkt --no-create-home --shell /usr/sbin/nologin trustd-demo
echo "\$ setpriv --reuid=trustd-demo --regid=rkt --init-groups rkt fetch demo.trustd.test/hello:1.0.0" >&2
"$PWD/.venv/bin/python" scripts/local_https.py --root "$OUT/site" --host demo.trustd.test -- \
  setpriv --reuid=trustd-demo --regid=rkt --init-groups "$RKT" "${FLAGS[@]}" fetch demo.trustd.test/hello:1.0.0

step "12. The store records where it came from and who signed it"
rkt image list --fields=id,name,signers,source
ls -l "$OUT/data/cas/blob/sha512/"*/*/

step "13. Root runs it in a container pod: the executor re-checks the signer, renders, isolates"
set +e
rkt run demo.trustd.test/hello:1.0.0
code=$?
set -e
echo "exit status of the pod: $code (the app's own)"
rkt list
UUID=$(ls "$OUT/data/pods/run" | head -1)
echo "(the pod's private/plan.json (root-only), first app: what ran, who signed it, how it was isolated)" >&2
python3 -c "import json,sys; a=json.load(open(sys.argv[1]))['apps'][0]; print(json.dumps({k: a[k] for k in ('image_key','signers','capabilities')} | {'seccomp': a['seccomp']['source']}, indent=1))" "$OUT/data/pods/run/$UUID/private/plan.json"

step "13b. The policy decides: the same image in the fly flavor is refused, with the reason"
if rkt run --stage1-name=fly demo.trustd.test/hello:1.0.0; then echo "UNEXPECTED: fly allowed"; exit 1; fi
rkt policy explain demo.trustd.test/hello

step "13c. A run of an image signed by a key not trusted for its name is refused before anything runs"
if rkt run "$OUT/hellox.aci"; then echo "UNEXPECTED: untrusted signer ran"; exit 1; fi

step "14. The pod start was measured into the TPM (embedded swtpm) before the app ran"
rkt attest status
cat "$OUT/data/pods/run/$UUID/measurement.json"

step "15. A remote verifier enrols the AK: its EK certificate chains to the TPM maker's CA, and the TPM activates a credential for the AK"
echo "(the embedded swtpm was manufactured by swtpm_setup with an EK certificate from a local CA: the demo trusts that CA)" >&2
cp "$OUT/data/tpm/ek-ca.pem" "$OUT/tpm-maker-ca.pem"
rkt attest identity --out "$OUT/identity"
rkt attest challenge "$OUT/identity" --registry "$OUT/ak-registry" --ca "$OUT/tpm-maker-ca.pem" --out "$OUT/challenge.bin"
rkt attest activate "$OUT/challenge.bin" --out "$OUT/secret.bin"
rkt attest enroll "$OUT/challenge.bin" "$OUT/secret.bin" --registry "$OUT/ak-registry"

step "15b. It sends a fresh nonce and verifies the quote offline, accepting only an enrolled AK"
NONCE=$(python3 -c "import secrets; print(secrets.token_hex(16))")
rkt attest ak --out "$OUT/ak.pem"
rkt attest quote --nonce "$NONCE" --out "$OUT/quote"
ls "$OUT/quote"
cat > "$OUT/verifier-policy.toml" <<TOML
signers = ["$FPR"]
flavors = ["container"]
require_seccomp = true
TOML
rkt attest verify "$OUT/quote" --registry "$OUT/ak-registry" --nonce "$NONCE" --policy "$OUT/verifier-policy.toml"
echo "\$ tpm2_checkquote (tpm2-tools) on the same bundle" >&2
tpm2_checkquote -u "$OUT/ak.pem" -m "$OUT/quote/quote.attest" -s "$OUT/quote/quote.sig" \
  -f "$OUT/quote/quote.pcrs" -g sha256 -q "$NONCE" >/dev/null && echo "tpm2_checkquote: OK"
echo "\$ a replayed (old) quote is refused: wrong nonce" >&2
if rkt attest verify "$OUT/quote" --ak "$OUT/ak.pem" --nonce "$(python3 -c "import secrets; print(secrets.token_hex(16))")"; then
  echo "UNEXPECTED: stale quote accepted"; exit 1
fi

step "16. A Docker image: build it (umoci, busybox-static), push it to a local registry (skopeo)"
REG="$OUT/registry"; mkdir -p "$REG/data"
PORT=$("$PWD/.venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp: {addr: 127.0.0.1:%s}\n' "$REG/data" "$PORT" > "$REG/config.yml"
docker-registry serve "$REG/config.yml" > "$REG/log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true; rkt attest stop-tpm >/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
umoci init --layout "$OUT/oci" && umoci new --image "$OUT/oci:latest"
umoci unpack --image "$OUT/oci:latest" "$OUT/bundle" >/dev/null
cp /bin/busybox "$OUT/bundle/rootfs/busybox"
umoci repack --image "$OUT/oci:latest" "$OUT/bundle"
umoci config --image "$OUT/oci:latest" --config.entrypoint /busybox --config.cmd echo \
  --config.cmd "hello from a Docker image" --os linux --architecture amd64
skopeo copy --quiet --dest-tls-verify=false "oci:$OUT/oci:latest" "docker://127.0.0.1:$PORT/demo/busybox:latest"

step "17. Unsigned Docker images are refused (even with --insecure-options=image under the shipped policy)"
if rkt --insecure-options=image,http fetch "docker://127.0.0.1:$PORT/demo/busybox:latest"; then
  echo "UNEXPECTED: the shipped policy let an unsigned image in"; exit 1
fi

step "18. ... unless the user asks for it (--insecure-options=image) AND a policy scope accepts it: then it is on record"
DOCKER_SCOPE="docker://127.0.0.1:$PORT/demo"   # as the user types the registry: no name mangling
cp trustd/shared/data/policy/default.toml "$OUT/local-config/policy.toml"
cat >> "$OUT/local-config/policy.toml" <<TOML

# the demo's local registry: unsigned Docker images accepted, explicitly and only here
[scopes."$DOCKER_SCOPE".require]
type = "accept-anything"
[scopes."$DOCKER_SCOPE".run]
insecure_options = ["image", "http"]
TOML
rkt policy check "$OUT/local-config/policy.toml" || true
rkt --insecure-options=image,http run "docker://127.0.0.1:$PORT/demo/busybox:latest"
rkt image list --fields=id,name,signers,source
rkt policy log verify   # both hash-chained decision logs, with the last decision in each
rkt policy audit --format=html --fail-on=never > "$OUT/audit.html"
echo "auditor's report: $OUT/audit.html (one self-contained page)"

step "19. Remote attestation of the demo pod over loopback: rkt attest serve (root quotes; the HTTPS server runs as rkt-attest) and a verifier's fresh challenge"
rkt attest stop-tpm   # a fresh TPM epoch, so the quote covers only the demo pod started next
set +e; rkt run demo.trustd.test/hello:1.0.0 >/dev/null; set -e
mkdir -p -m 0700 "$OUT/tls"
"$PWD/.venv/bin/python" - "$OUT/tls" <<'PY'
import sys, trustme
ca = trustme.CA(); out = sys.argv[1]
server = ca.issue_cert("127.0.0.1"); client = ca.issue_cert("verifier.demo")
ca.cert_pem.write_to_path(f"{out}/ca.pem")
server.cert_chain_pems[0].write_to_path(f"{out}/server.pem")
server.private_key_pem.write_to_path(f"{out}/server.key")
client.private_key_and_cert_chain_pem.write_to_path(f"{out}/client.pem")
PY
# the verifier accepts only the AK it enrolled in step 15 (CA-anchored: EK certificate from the
# TPM maker's CA, credential activated by the TPM)
# in the background, rkt itself (not the rkt() function's subshell), so $! is the server
SERVE=(attest serve --listen=127.0.0.1:0 --cert="$OUT/tls/server.pem" --key="$OUT/tls/server.key"
  --client-ca="$OUT/tls/ca.pem")
echo "\$ rkt ${SERVE[*]}" >&2
"$RKT" "${FLAGS[@]}" "${SERVE[@]}" > "$OUT/attester.log" 2>&1 &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true; kill $REG_PID 2>/dev/null || true; rkt attest stop-tpm >/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$OUT/attester.log" && break; sleep 0.1; done
cat "$OUT/attester.log"
URL=$(grep -o 'https://[^ ]*' "$OUT/attester.log" | head -1)
rkt attest verify --remote "$URL" --registry "$OUT/ak-registry" --ca="$OUT/tls/ca.pem" \
  --client-cert="$OUT/tls/client.pem" --policy "$OUT/verifier-policy.toml"
echo "\$ a verifier policy that requires a hardware TPM refuses the swtpm" >&2
printf 'require_hardware_tpm = true\n' > "$OUT/verifier-hw.toml"
if rkt attest verify --remote "$URL" --registry "$OUT/ak-registry" --ca="$OUT/tls/ca.pem" \
  --client-cert="$OUT/tls/client.pem" --policy "$OUT/verifier-hw.toml"; then
  echo "UNEXPECTED: a software TPM passed a hardware-only policy"; exit 1
fi
kill $SERVE_PID; wait $SERVE_PID 2>/dev/null || true

step "demo complete"
