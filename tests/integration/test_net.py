"""Pods on CNI networks (issue #16), with the real plugins from containernetworking-plugins,
iptables and busybox: every packet stays on loopback, the host side of the pods' veths, and
the network namespaces the pods get. What the pod (or the host) sees decides each case."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._busybox import busybox_aci
from tests._policy import install_policy, policy_for_tests
from tests.conftest import ConfigDirs, Keys
from tests.integration._attacker import as_member, member
from tests.integration.conftest import RKT, app_output, ensure_user, rkt
from trustd.shared.errors import LocalStateError

NAME = "example.com/busybox"
STATE = Path("/run/trustd")

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/cni/ptp").exists(), reason="needs containernetworking-plugins"
)


@pytest.fixture
def web(shared_dirs: ConfigDirs, image: str, keys: Keys, tmp_path: Path) -> str:
    """A signed busybox image that declares port http (tcp 80)."""
    aci = busybox_aci(
        tmp_path / "web.aci",
        "example.com/web",
        app_extra={"ports": [{"name": "http", "protocol": "tcp", "port": 80}]},
        files={"www/index.html": b"hello from the pod\n"},
    )
    keys.gpg.sign(keys.good, aci, tmp_path / "web.aci.asc")
    return rkt(shared_dirs, "fetch", "--full", str(aci), check=True).stdout.strip()


def with_networks(value: str) -> str:
    shipped = 'networks = ["default", "default-restricted", "none"]'
    text = policy_for_tests()
    assert shipped in text
    return text.replace(shipped, f"networks = {value}", 1)


def sh(dirs: ConfigDirs, image: str, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """A pod running ``script``; its output as the app wrote it (without rkt's prefix)."""
    result = rkt(dirs, "run", *flags, image, "--exec=/bin/sh", "--", "-c", script)
    result.stdout = app_output(result.stdout)
    return result


def leftovers() -> dict[str, int]:
    """What a pod network leaves on the host: veths, pinned netns, IPAM leases, iptables
    rules (nat and filter), port mappings."""
    links = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=True
    )
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    leases = [
        p
        for p in (STATE / "cni" / "networks").glob("*/*")
        if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip")
    ]
    return {
        "veth": len(links.stdout.splitlines()),
        "netns": len(list((STATE / "netns").glob("*"))),
        "records": len(list((STATE / "net").glob("*.json"))),
        "leases": len(leases),
        "iptables": sum(1 for line in rules.splitlines() if line.startswith("-A")),
        "portmaps": sum(1 for line in rules.splitlines() if line.startswith("-A CNI-DN-")),
    }


def test_default_network_gives_an_address_a_route_and_list_columns(
    shared_dirs: ConfigDirs, image: str
) -> None:
    result = sh(shared_dirs, image, "ip -4 -o addr show eth0; ip route")
    assert result.returncode == 0, result.stderr
    assert re.search(r"inet 172\.16\.28\.\d+/24", result.stdout), result.stdout
    assert "default via 172.16.28.1" in result.stdout
    listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
    (net,) = listed[0]["networks"]
    assert net["netName"] == "default" and net["ifName"] == "eth0"
    assert net["ip"].startswith("172.16.28.")
    table = rkt(shared_dirs, "list", check=True).stdout
    assert "NETWORKS" in table.splitlines()[0] and "default:ip4=172.16.28." in table
    status = rkt(shared_dirs, "status", listed[0]["name"], check=True).stdout
    assert re.search(r"^networks=default:ip4=172\.16\.28\.\d+$", status, re.M), status


def test_none_is_loopback_only(shared_dirs: ConfigDirs, image: str) -> None:
    result = sh(shared_dirs, image, "ls /sys/class/net", "--net=none")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lo"]


def test_default_restricted_has_no_route_out(shared_dirs: ConfigDirs, image: str) -> None:
    script = "ip route; nc -w 2 198.51.100.1 80 </dev/null 2>&1; echo rc=$?"
    result = sh(shared_dirs, image, script, "--net=default-restricted")
    assert result.returncode == 0, result.stderr
    assert "172.17." in result.stdout and "default" not in result.stdout
    assert "unreachable" in result.stdout.lower() and "rc=1" in result.stdout


@pytest.fixture
def server(shared_dirs: ConfigDirs, web: str) -> Iterator[subprocess.Popen[str]]:
    """A pod serving /www over HTTP on port 80, forwarded from 127.0.0.1:18080."""
    proc = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            "--port=http:127.0.0.1:18080",
            web,
            "--exec=/bin/httpd",
            "--",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    for _ in range(300):
        listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
        if listed and listed[0].get("networks"):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    yield proc
    rkt(shared_dirs, "stop", listed[0]["name"])
    proc.communicate(timeout=60)


def _get(url: str) -> str:
    problem = ""
    for _ in range(100):  # httpd may still be starting
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - http on loopback
                return str(reply.read().decode())
        except OSError as exc:
            problem = str(exc)
        time.sleep(0.1)
    return problem


def test_port_forward_from_127_0_0_1_and_pod_to_pod(
    shared_dirs: ConfigDirs, image: str, server: subprocess.Popen[str]
) -> None:
    assert _get("http://127.0.0.1:18080/index.html") == "hello from the pod\n"
    listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
    ip = listed[0]["networks"][0]["ip"]
    get = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80"
    result = sh(shared_dirs, image, get)
    assert result.stdout.startswith("HTTP/1.1 200 OK"), result.stderr
    assert result.stdout.endswith("\n\nhello from the pod\n")  # text mode: \r\n read as \n


def test_port_must_be_declared_by_the_image(shared_dirs: ConfigDirs, image: str) -> None:
    result = rkt(shared_dirs, "run", "--port=http:18081", image)
    assert result.returncode == 254
    assert "port 'http' is not declared by any app of the pod" in result.stderr


def test_dns_hosts_and_hostname_inside_the_pod(shared_dirs: ConfigDirs, image: str) -> None:
    flags = (
        "--dns=192.0.2.53",
        "--dns=192.0.2.54",
        "--dns-search=example.com",
        "--dns-opt=ndots:2",
        "--dns-domain=example.org",
        "--hosts-entry=198.51.100.7=db.example",
        "--hostname=web1",
    )
    result = sh(shared_dirs, image, "cat /etc/resolv.conf /etc/hosts; hostname", *flags)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# Generated by rkt run\n\nsearch example.com\nnameserver 192.0.2.53\n" in out
    assert "nameserver 192.0.2.54\noptions ndots:2\ndomain example.org\n" in out
    assert "127.0.0.1\tlocalhost" in out and "198.51.100.7 db.example\n" in out
    assert out.rstrip().endswith("web1")


def test_bad_network_flags_are_refused(shared_dirs: ConfigDirs, image: str) -> None:
    for flag, words in (
        ("--net=nosuchnet", "stage1: failed to setup network: network 'nosuchnet' not found"),
        ("--dns=8.8.8.8\nnameserver 1.1.1.1", "--dns"),
        ("--hosts-entry=not-an-ip=x", "must be an IP address"),
        ("--net=host,default", "cannot be combined"),
    ):
        result = rkt(shared_dirs, "run", flag, image)
        assert result.returncode == 254, flag
        assert words in result.stderr, result.stderr
    assert not list((STATE / "netns").glob("*")) or all(
        p.name not in result.stderr for p in (STATE / "netns").glob("*")
    )


def test_gc_leaves_nothing_behind(shared_dirs: ConfigDirs, web: str) -> None:
    """A pod whose rkt is killed (so it cannot tear down) is cleaned by stop + gc: no veth,
    netns, lease, iptables rule or port mapping is left."""
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)  # sweeps what earlier tests left
    before = leftovers()
    assert rkt(shared_dirs, "run", "--port=http:127.0.0.1:18083", web).returncode == 0
    assert leftovers() == before  # a pod that exits is torn down by its own run
    proc = subprocess.Popen(
        [
            RKT,
            *shared_dirs.flags(),
            "run",
            "--port=http:127.0.0.1:18082",
            web,
            "--exec=/bin/sleep",
            "--",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    for _ in range(300):
        listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
        listed = [p for p in listed if p["state"] == "running" and p.get("networks")]
        if listed:
            break
        time.sleep(0.1)
    during = leftovers()
    assert during["veth"] == before["veth"] + 1 and during["netns"] == before["netns"] + 1
    assert during["leases"] == before["leases"] + 1 and during["portmaps"] > before["portmaps"]
    assert during["iptables"] > before["iptables"]
    os.kill(proc.pid, signal.SIGKILL)  # no teardown by the run itself
    proc.wait()
    rkt(shared_dirs, "stop", "--force", listed[0]["name"], check=True)
    for _ in range(100):
        if rkt(shared_dirs, "status", listed[0]["name"]).stdout.startswith("state=exited"):
            break
        time.sleep(0.1)
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)
    assert leftovers() == before


def test_a_scope_refusing_the_network_stops_the_run(shared_dirs: ConfigDirs, image: str) -> None:
    text = with_networks('["none"]')
    install_policy(shared_dirs.local, text)
    result = rkt(shared_dirs, "run", image)
    assert result.returncode == 254
    assert "network default is not allowed for this scope (allowed: none)" in result.stderr
    assert rkt(shared_dirs, "run", "--net=none", image).returncode == 0
    log = (shared_dirs.data / "private" / "decisions.jsonl").read_text()
    assert "network default is not allowed" in log


def test_host_networking_needs_a_scope_that_allows_it(shared_dirs: ConfigDirs, image: str) -> None:
    result = rkt(shared_dirs, "run", "--net=host", image)
    assert result.returncode == 254 and "network host is not allowed" in result.stderr
    text = with_networks('["default", "host"]')
    install_policy(shared_dirs.local, text)
    result = sh(shared_dirs, image, "ls /sys/class/net", "--net=host")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(p.name for p in Path("/sys/class/net").iterdir())


def _named(dirs: ConfigDirs, mode: int, owner: int = 0) -> Path:
    netd = dirs.local / "net.d"
    netd.mkdir(mode=0o755, exist_ok=True)
    conf = netd / "10-lo.conf"
    conf.write_text(json.dumps({"name": "lonet", "type": "loopback"}))
    conf.chmod(mode)
    os.chown(conf, owner, 0)
    return conf


def test_named_network_from_net_d_with_cni_args(shared_dirs: ConfigDirs, image: str) -> None:
    _named(shared_dirs, 0o644)
    text = with_networks('["*", "none"]')
    install_policy(shared_dirs.local, text)
    result = sh(shared_dirs, image, "ls /sys/class/net", "--net=lonet:IgnoreUnknown=1")
    assert result.returncode == 0, result.stderr
    # a named network without default joins default-restricted too (rkt)
    assert sorted(result.stdout.split()) == ["eth1", "lo"]


def test_a_group_member_cannot_plant_a_network_config(shared_dirs: ConfigDirs, image: str) -> None:
    """A config root would run plugins from must be root's and not group/other-writable."""
    text = with_networks('["*", "none"]')
    install_policy(shared_dirs.local, text)
    conf = _named(shared_dirs, 0o666)
    result = rkt(shared_dirs, "run", "--net=lonet", image)
    assert result.returncode == 254 and "not writable by group or others" in result.stderr
    member("/bin/sh", "-c", f'echo \'{{"name": "lonet", "type": "bridge"}}\' > {conf}')
    result = rkt(shared_dirs, "run", "--net=lonet", image)  # planted: still refused
    assert result.returncode == 254 and "not writable by group or others" in result.stderr
    uid = pwd.getpwnam(ensure_user()).pw_uid
    conf = _named(shared_dirs, 0o644, owner=uid)
    result = rkt(shared_dirs, "run", "--net=lonet", image)
    assert result.returncode == 254 and f"owned by uid {uid}" in result.stderr


def test_a_group_member_cannot_reach_root_network_state(
    shared_dirs: ConfigDirs, image: str
) -> None:
    """netns files, teardown records and IPAM leases are in /run/trustd (0700 root): a
    member can neither plant a netns there nor read or alter a record."""
    assert sh(shared_dirs, image, "true").returncode == 0  # makes the dirs
    for sub in ("netns", "net", "cni/networks"):
        path = STATE / sub
        st = path.stat()
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, path
        tried = as_member("/bin/sh", "-c", f"touch {path}/planted || ls {path}")
        assert tried.returncode != 0 and not (path / "planted").exists()
    assert (STATE.stat().st_mode & 0o077) == 0


def test_a_plugin_root_cannot_trust_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CNI plugin binary the group could replace (group-writable, or in a directory it can
    write) is refused before it runs."""
    from trustd.privileged.net import _config  # noqa: PLC0415

    plugins = tmp_path / "cni"
    plugins.mkdir(mode=0o755)
    ran = tmp_path / "ran"
    fake = plugins / "ptp"
    fake.write_text(f"#!/bin/sh\ntouch {ran}\n")
    fake.chmod(0o775)
    monkeypatch.setattr(_config, "PLUGIN_DIR", plugins)
    with pytest.raises(LocalStateError, match="not writable by group or others"):
        _config.plugin("ptp")
    fake.chmod(0o755)
    plugins.chmod(0o775)
    with pytest.raises(LocalStateError, match="not writable by group or others"):
        _config.plugin("ptp")
    with pytest.raises(LocalStateError, match="not a plain name"):
        _config.plugin("../../tmp/ptp")
    assert not ran.exists()


def test_run_prepared_takes_the_network_flags(shared_dirs: ConfigDirs, web: str) -> None:
    """prepare takes --port only; run-prepared takes --net, --dns*, --hosts-entry and
    --hostname (rkt's split); a prepared --port needs a CNI network at run-prepared."""
    prepared = rkt(
        shared_dirs,
        "prepare",
        "--quiet",
        web,
        "--exec=/bin/sh",
        "--",
        "-c",
        "ls /sys/class/net; cat /etc/resolv.conf; hostname",
    )
    assert prepared.returncode == 0, prepared.stderr
    uuid = prepared.stdout.strip().splitlines()[-1]
    result = rkt(
        shared_dirs, "run-prepared", "--net=none", "--dns=192.0.2.9", "--hostname=prep1", uuid
    )
    assert result.returncode == 0, result.stderr
    assert app_output(result.stdout).split() == [
        "lo",
        "#",
        "Generated",
        "by",
        "rkt",
        "run",
        "nameserver",
        "192.0.2.9",
        "prep1",
    ]
    ported = rkt(shared_dirs, "prepare", "--quiet", "--port=http:18084", web)
    uuid = ported.stdout.strip().splitlines()[-1]
    result = rkt(shared_dirs, "run-prepared", "--net=none", uuid)
    assert result.returncode == 254 and "needs a CNI network" in result.stderr


def test_a_killed_run_whose_data_dir_went_is_swept(
    shared_dirs: ConfigDirs, image: str, tmp_path: Path
) -> None:
    """rkt killed, the pod stopped and its whole data dir removed: no gc can find the pod, so
    the next pod start (or any gc) tears its network down from root's record in /run."""
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)  # sweeps what earlier tests left
    before = leftovers()
    proc = subprocess.Popen(
        [RKT, *shared_dirs.flags(), "run", image, "--exec=/bin/sleep", "--", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    for _ in range(300):
        listed = json.loads(rkt(shared_dirs, "list", "--format=json", check=True).stdout)
        listed = [p for p in listed if p["state"] == "running" and p.get("networks")]
        if listed:
            break
        time.sleep(0.1)
    assert leftovers()["veth"] == before["veth"] + 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rkt(shared_dirs, "stop", "--force", listed[0]["name"], check=True)
    for _ in range(100):
        if rkt(shared_dirs, "status", listed[0]["name"]).stdout.startswith("state=exited"):
            break
        time.sleep(0.1)
    subprocess.run(["rm", "-rf", str(shared_dirs.data)], check=True)
    assert rkt(shared_dirs, "gc", "--grace-period=0s").returncode == 0  # a fresh data dir
    assert leftovers() == before
