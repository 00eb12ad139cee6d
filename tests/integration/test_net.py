"""Pods on CNI networks (issue #16), with the real plugins from containernetworking-plugins,
iptables and busybox: every packet stays on loopback, the host side of the pods' veths, and
the network namespaces the pods get. What the pod (or the host) sees decides each case."""

from __future__ import annotations

import json
import os
import pwd
import re
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
from tests.integration.conftest import RunningPod, app_output, ensure_user, rkt, running_pod
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


def _lines(cmd: list[str]) -> list[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()


def pod_state(uuid: str, ip: str | None = None) -> dict[str, list[str]]:
    """What pod ``uuid``'s networks hold on the host, found by what names that pod alone (so
    pods of other tests or users running meanwhile do not count): its pinned netns and
    root's record (named by the UUID), its IPAM leases (host-local writes the container ID,
    the UUID, into each), the iptables rules whose comment carries the UUID (ipMasq's and
    portmap's) and the chains they jump to, and the host route to its address with the
    host-side veth it goes through."""
    rules = [ln for ln in _lines(["iptables-save"]) if ln.startswith("-A") and uuid in ln]
    chains = sorted({m[1] for ln in rules if (m := re.search(r" -j (CNI-\S+)", ln))})
    routes = _lines(["ip", "-o", "route", "show", "to", ip]) if ip else []
    veths = sorted({m[1] for r in routes if (m := re.search(r" dev (\S+)", r))})
    leases = [
        str(p)
        for p in (STATE / "cni" / "networks").glob("*/*")
        if p.is_file() and p.read_text(errors="replace").split("\n", 1)[0].strip() == uuid
    ]
    return {
        "netns": [str(p) for p in [STATE / "netns" / uuid] if p.exists()],
        "record": [str(p) for p in [STATE / "net" / f"{uuid}.json"] if p.exists()],
        "leases": leases,
        "rules": rules,
        "chains": chains,
        "routes": routes,
        "veths": veths,
    }


def gone(state: dict[str, list[str]], uuid: str, ip: str) -> dict[str, list[str]]:
    """What of ``state`` (taken while the pod ran) is still on the host: nothing, after a
    clean teardown (the chains and veth by the names they had)."""
    now = pod_state(uuid, ip)
    tables = _lines(["iptables-save"])
    links = _lines(["ip", "-o", "link", "show"])
    now["chains"] = [c for c in state["chains"] if any(f":{c} " in t for t in tables)]
    now["veths"] = [v for v in state["veths"] if any(f": {v}@" in ln for ln in links)]
    return {k: v for k, v in now.items() if v}


def pod_ip(dirs: ConfigDirs, uuid: str) -> str:
    listed = json.loads(rkt(dirs, "list", "--format=json", check=True).stdout)
    (entry,) = [p for p in listed if p["name"] == uuid]
    return str(entry["networks"][0]["ip"])


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


def test_bare_net_is_default(shared_dirs: ConfigDirs, image: str) -> None:
    """``--net`` alone is ``default`` and takes no value (rkt's NoOptDefVal): the next word
    is still the image."""
    result = rkt(shared_dirs, "run", "--net", image, "--exec=/bin/ip", "--", "-4", "-o", "addr")
    assert result.returncode == 0, result.stderr
    assert re.search(r"eth0\s+inet 172\.16\.28\.\d+/24", app_output(result.stdout)), result.stdout


def test_default_restricted_has_no_route_out(shared_dirs: ConfigDirs, image: str) -> None:
    script = "ip route; nc -w 2 198.51.100.1 80 </dev/null 2>&1; echo rc=$?"
    result = sh(shared_dirs, image, script, "--net=default-restricted")
    assert result.returncode == 0, result.stderr
    assert "172.17." in result.stdout and "default" not in result.stdout
    assert "unreachable" in result.stdout.lower() and "rc=1" in result.stdout


@pytest.fixture
def server(shared_dirs: ConfigDirs, web: str) -> Iterator[RunningPod]:
    """A pod serving /www over HTTP on port 80, forwarded from 127.0.0.1:18080."""
    with running_pod(
        shared_dirs,
        web,
        "--port=http:127.0.0.1:18080",
        script="exec httpd -f -p 80 -h /www",
        comm="httpd",
    ) as pod:
        yield pod


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
    shared_dirs: ConfigDirs, image: str, server: RunningPod
) -> None:
    assert _get("http://127.0.0.1:18080/index.html") == "hello from the pod\n"
    ip = server.listed["networks"][0]["ip"]  # type: ignore[index]
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
    """A pod that exits is torn down by its own run; one whose rkt is killed (so it cannot
    tear down) is cleaned by stop + gc: no veth, netns, lease, iptables rule or port mapping
    of that pod is left. Counted per pod, so other pods on the host do not disturb it."""
    uuid_file = shared_dirs.data.parent / "exits"
    ran = rkt(shared_dirs, "run", f"--uuid-file-save={uuid_file}", "--port=http:18083", web)
    assert ran.returncode == 0, ran.stderr
    uuid = uuid_file.read_text().strip()
    ip = pod_ip(shared_dirs, uuid)
    assert {k: v for k, v in pod_state(uuid, ip).items() if v} == {}  # torn down by its run
    with running_pod(
        shared_dirs, web, "--port=http:127.0.0.1:18082", script="exec /bin/sleep 600"
    ) as pod:
        ip = pod.listed["networks"][0]["ip"]  # type: ignore[index]
        during = pod_state(pod.uuid, ip)
        assert len(during["netns"]) == len(during["record"]) == len(during["leases"]) == 1
        assert len(during["routes"]) == len(during["veths"]) == 1, during
        assert any("MASQUERADE" in r for r in during["rules"]), during["rules"]
        assert any("DNAT" in r and "18082" in r for r in during["rules"]), during["rules"]
        assert during["chains"], during
        pod.proc.kill()  # no teardown by the run itself
        pod.proc.wait()
        assert pod_state(pod.uuid, ip)["netns"]  # still there: nobody tore it down
        rkt(shared_dirs, "stop", "--force", pod.uuid, check=True)
        for _ in range(100):
            if rkt(shared_dirs, "status", pod.uuid).stdout.startswith("state=exited"):
                break
            time.sleep(0.1)
    rkt(shared_dirs, "gc", "--grace-period=0s", check=True)
    assert gone(during, pod.uuid, ip) == {}


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
    with running_pod(shared_dirs, image) as pod:
        ip = pod.listed["networks"][0]["ip"]  # type: ignore[index]
        during = pod_state(pod.uuid, ip)
        assert len(during["veths"]) == 1 and len(during["record"]) == 1, during
        pod.proc.kill()
        pod.proc.wait()
        rkt(shared_dirs, "stop", "--force", pod.uuid, check=True)
        for _ in range(100):
            if rkt(shared_dirs, "status", pod.uuid).stdout.startswith("state=exited"):
                break
            time.sleep(0.1)
    subprocess.run(["rm", "-rf", str(shared_dirs.data)], check=True)
    assert rkt(shared_dirs, "gc", "--grace-period=0s").returncode == 0  # a fresh data dir
    assert gone(during, pod.uuid, ip) == {}
