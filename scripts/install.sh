#!/usr/bin/env bash
# `make install [DESTDIR=...] [PREFIX=/usr]`: trustd in Debian 12's layout (packaging/README.md).
#
# The package goes into a venv on the platform's interpreter (/usr/bin/python3, never a
# per-user one, so group rkt can execute it), at $PREFIX/lib/trustd/venv; $PREFIX/bin/rkt is a
# relative symlink to its rkt. The venv is built where it is staged ($DESTDIR$PREFIX/...) from
# the wheel (`pip wheel`: the same files any wheel install gets), then made to name its final
# place: the scripts' shebangs, the activate scripts and pyvenv.cfg are rewritten, and the
# bytecode is compiled again with the final paths, so no file names $DESTDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
PYTHON=${PYTHON:-/usr/bin/python3}
PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
SYSTEM_CONFIG=/usr/lib/rkt  # trustd's default --system-config (not under PREFIX)
VENV=$PREFIX/lib/trustd/venv
STAGE=$DESTDIR$VENV
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "install: trustd into $STAGE (on $PYTHON $("$PYTHON" -c 'import platform; print(platform.python_version())'))"
rm -rf "$STAGE"
mkdir -p "$(dirname "$STAGE")"
"$PYTHON" -m venv "$STAGE"
"$STAGE/bin/python" -m pip install -q --upgrade pip
"$STAGE/bin/python" -m pip wheel -q --no-deps -w "$WORK/wheel" .
"$STAGE/bin/python" -m pip install -q "$WORK"/wheel/trustd-*.whl
rm -rf build  # pip wheel's in-tree build directory
# pip records the temporary wheel's URL (PEP 610); it names a file that is gone: drop it.
for info in "$STAGE"/lib/python3*/site-packages/trustd-*.dist-info; do
  rm -f "$info/direct_url.json" && sed -i '/direct_url\.json,/d' "$info/RECORD"
done

if [ -n "$DESTDIR" ]; then
  grep -rlIZ -- "$STAGE" "$STAGE/bin" "$STAGE/pyvenv.cfg" | xargs -0 -r sed -i "s|$STAGE|$VENV|g"
  "$STAGE/bin/python" -m compileall -q -f -j 0 -s "$DESTDIR" -p / "$STAGE/lib"
fi

install -d "$DESTDIR$PREFIX/bin"
ln -sfn ../lib/trustd/venv/bin/rkt "$DESTDIR$PREFIX/bin/rkt"
install -D -m 0644 trustd/shared/data/policy/default.toml "$DESTDIR$SYSTEM_CONFIG/policy.toml"
install -D -m 0644 packaging/sysusers.d/rkt.conf "$DESTDIR$PREFIX/lib/sysusers.d/rkt.conf"
install -D -m 0644 packaging/tmpfiles.d/rkt.conf "$DESTDIR$PREFIX/lib/tmpfiles.d/rkt.conf"
for unit in rkt-gc.service rkt-gc.timer rkt-metadata.service rkt-metadata.socket; do
  install -d "$DESTDIR$UNITDIR"
  sed "s|@BINDIR@|$PREFIX/bin|g" "packaging/systemd/$unit" > "$DESTDIR$UNITDIR/$unit"
  chmod 0644 "$DESTDIR$UNITDIR/$unit"
done

# Completions and man pages from the parser of the copy just installed (-E -s: no PYTHONPATH, no
# user site; never the source tree:
# scripts/ is first on sys.path, the venv's site-packages next).
"$STAGE/bin/python" -E -s scripts/gen-completions.py bash > "$WORK/rkt.bash"
"$STAGE/bin/python" -E -s scripts/gen-completions.py zsh > "$WORK/_rkt"
install -D -m 0644 "$WORK/rkt.bash" "$DESTDIR$PREFIX/share/bash-completion/completions/rkt"
install -D -m 0644 "$WORK/_rkt" "$DESTDIR$PREFIX/share/zsh/vendor-completions/_rkt"
"$STAGE/bin/python" -E -s scripts/gen-man.py "$WORK/man" >/dev/null
install -d "$DESTDIR$PREFIX/share/man/man1"
for page in "$WORK"/man/*.1; do
  gzip -9n < "$page" > "$DESTDIR$PREFIX/share/man/man1/$(basename "$page").gz"
done
chmod 0644 "$DESTDIR$PREFIX"/share/man/man1/rkt*.1.gz
install -D -m 0644 README.md "$DESTDIR$PREFIX/share/doc/trustd/README.md"
install -D -m 0644 LICENSE "$DESTDIR$PREFIX/share/doc/trustd/LICENSE"

# A real system install (no DESTDIR) also creates the accounts and directories now, as a
# package's postinst would.
if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$PREFIX/lib/sysusers.d/rkt.conf"
  else
    bash scripts/setup-groups.sh
  fi
  if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create "$PREFIX/lib/tmpfiles.d/rkt.conf"
  fi
fi
echo "install: done: $DESTDIR$PREFIX/bin/rkt"
