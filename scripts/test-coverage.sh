#!/bin/bash
# make test: the whole suite with coverage of every Python process it starts, not only pytest's.
#
# The root program runs `python -I` with an allow-listed environment, so neither
# COVERAGE_PROCESS_START nor coverage's own `patch = ["subprocess"]` (an environment variable)
# reaches it. A .pth file does: `-I` still processes the venv's site-packages. For the length of
# this run only, a .pth starts coverage in each interpreter of this venv (pytest, `rkt`, the root
# program, rkt-mds) while the marker directory exists; forked children (privsep, stage1, export)
# are followed by coverage's fork and _exit patches and `sigterm = true` (pyproject.toml). Data goes
# to a sticky world-writable directory, since the fetch child writes as the unprivileged user.
# What cannot be measured: a stage1 child after pivot_root (the data directory is out of its
# view; its save fails silently) and the CLI part of a verb before it execs the root program.
# The report is information, not a gate: no percentage fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/.venv/bin"
data="$root/.coverage-data"
site=$("$bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pth="$site/zz-trustd-test-coverage.pth"
rm -rf "$data" "$root/.coverage"
mkdir -p "$data" && chmod 1777 "$data"
trap 'rm -f "$pth"; rm -rf "$data"' EXIT
cat >"$pth" <<PTH
import os; exec("if os.path.isdir('$data'):\n os.environ.setdefault('COVERAGE_PROCESS_START', '$root/pyproject.toml')\n os.environ.setdefault('COVERAGE_FILE', '$data/.coverage')\n import coverage\n coverage.process_startup()")
PTH
"$bin/pytest" -q "${@:-tests}"
status=$?
"$bin/coverage" combine --quiet --data-file="$root/.coverage" "$data"
"$bin/coverage" report --data-file="$root/.coverage" --skip-covered --show-missing
exit $status
