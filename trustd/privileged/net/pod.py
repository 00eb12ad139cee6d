"""A pod on its networks: resolve at prepare, attach before the stage1 starts, detach after.

attach: a fresh netns pinned at ``/run/trustd/netns/<uuid>``; CNI ADD of each network in join
order (``eth0``, ``eth1``, ...), then the ``portmap`` plugin chained on the first network
for ``--port``. After every step root's ``/run/trustd/net/<uuid>.json`` records what exists, so a
pod whose ``rkt`` was killed is torn down by ``rkt gc`` from that record. detach: CNI DEL in
reverse order (portmap first), with the same configuration and the ADD result as
``prevResult``; then the netns goes and the record with it. Every step of detach runs even
when an earlier one failed, and running it twice is harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustd.privileged.net import _config, _netns
from trustd.privileged.net._cni import Result, execute, parse_result
from trustd.privileged.net._etc import write_sources
from trustd.privileged.net.model import NetPlan, PodNetPlan, PortPlan
from trustd.shared._dataclass import frozen
from trustd.shared._fsutil import atomic_write, read_capped
from trustd.shared.errors import LocalStateError, TrustdError, UserError
from trustd.shared.net import NetOptions

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

STATE_DIR = _config.STATE_ROOT / "net"  # <uuid>.json: what exists, for teardown (volatile,
# like the netns and the leases it describes: a reboot removes all three)
PUBLIC = "net-info.json"  # in the pod dir, for rkt list/status (rkt's file name)
PORTMAP_IFNAME = "eth0"


def resolve(options: NetOptions, local_config: Path, system_config: Path) -> PodNetPlan:
    """The configurations the pod will join, read now from root-owned files only."""
    if options.mode != "cni":
        return PodNetPlan(options=options)
    refs = options.networks
    confs = _config.resolve([r.name for r in refs], local_config, system_config)
    args = {r.name: r.args for r in refs}
    nets = tuple(
        NetPlan(
            c.name, args.get(c.name, ()), f"eth{i}", _config.canonical(c.config).decode(), c.source
        )
        for i, c in enumerate(confs)
    )
    return PodNetPlan(options=options, networks=nets)


def resolve_ports(plan: PodNetPlan, image_ports: Sequence[tuple[str, str, int]]) -> PodNetPlan:
    """``--port NAME:...`` matched against the apps' manifest ports (name, protocol, port)."""
    ports = []
    for req in plan.options.ports:
        match = [p for p in image_ports if p[0] == req.name]
        if not match:
            known = ", ".join(sorted({p[0] for p in image_ports})) or "none"
            raise UserError(
                f"port {req.name!r} is not declared by any app of the pod (its ports: {known})",
                hint="name one of the image's ports in --port NAME:[HOSTIP:]HOSTPORT",
            )
        _, protocol, port = match[0]
        if protocol not in ("tcp", "udp"):
            raise UserError(f"port {req.name!r} has protocol {protocol!r}; tcp or udp only")
        ports.append(PortPlan(req.name, protocol, port, req.host_port, req.host_ip))
    if len({(p.host_ip, p.host_port, p.protocol) for p in ports}) != len(ports):
        raise UserError("two --port flags forward the same host port")
    return PodNetPlan(options=plan.options, networks=plan.networks, ports=tuple(ports))


@frozen
class _Step:
    name: str  # network name ("portmap" for the forwards)
    ifname: str
    args: str
    config: dict[str, Any]
    result: dict[str, Any] | None  # None: ADD was started but gave no result


def _state(uuid: str) -> Path:
    return STATE_DIR / f"{uuid}.json"


def _record(uuid: str, steps: list[_Step], pods: Path | None = None) -> None:
    """Replace the record (tmpfs: a rename, no fsync needed across a crash of this host)."""
    if pods is None:
        old = _load(uuid)
        pods = Path(str(old["pods"])) if old and isinstance(old.get("pods"), str) else None
    doc = {
        "uuid": uuid,
        "pods": str(pods) if pods else None,
        "steps": [_step_doc(s) for s in steps],
    }
    tmp = STATE_DIR / f".{uuid}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(doc, sort_keys=True).encode())
    finally:
        os.close(fd)
    tmp.replace(_state(uuid))


def _step_doc(step: _Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "ifname": step.ifname,
        "args": step.args,
        "config": step.config,
        "result": step.result,
    }


def _portmap_config(
    first: dict[str, Any], prev: dict[str, Any], ports: Sequence[PortPlan]
) -> dict[str, Any]:
    mappings = [
        {
            "hostPort": p.host_port,
            "containerPort": p.container_port,
            "protocol": p.protocol,
            **({"hostIP": p.host_ip} if p.host_ip else {}),
        }
        for p in ports
    ]
    return {
        "cniVersion": first["cniVersion"],
        "name": first["name"],
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "snat": True,
        "runtimeConfig": {"portMappings": mappings},
        "prevResult": prev,
    }


def _with_prev(config: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    return {**config, "prevResult": result} if result is not None else config


def sweep() -> list[str]:
    """Tear down the networks of pods nobody runs any more: a ``rkt run`` that was killed,
    then its data dir removed, leaves no pod for ``rkt gc`` to find. The UUIDs torn down.
    Whether the pod lives is read only from what root made (_sweep.py): a ``pods/`` path
    that another user made again, or a symlink in it, is not believed, and said."""
    swept = []
    records = sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []
    if records:
        from trustd.privileged.net import _sweep  # noqa: PLC0415 - only with records

    for path in records:
        uuid = path.stem
        try:
            doc = _load(uuid)
        except LocalStateError:
            doc = None
        pods = doc.get("pods") if doc else None
        if isinstance(pods, str):
            try:
                if _sweep.pod_alive(Path(pods), uuid):
                    continue
            except _sweep.Untrusted as exc:
                print(
                    f"warning: network of pod {uuid}: not believed ({exc}); tearing it down",
                    file=sys.stderr,
                )
        detach(uuid)
        swept.append(uuid)
    return swept


def attached() -> set[str] | None:
    """The UUIDs that have a network record or a pinned netns, from one listing of each
    directory (``rkt gc``: not one :func:`detach` try per pod); None when either directory
    cannot be listed (then every pod is tried)."""
    found: set[str] = set()
    for where, suffix in ((STATE_DIR, ".json"), (_netns.NETNS_DIR, "")):
        try:
            names = os.listdir(where)  # noqa: PTH208 - names only, no Path each
        except FileNotFoundError:
            continue
        except OSError:
            return None
        found.update(n.removesuffix(suffix) for n in names if n.endswith(suffix))
    return found


def attach(uuid: str, plan: PodNetPlan, pods: Path | None = None) -> list[Result]:
    """Put the pod on its networks; on failure, undo what was done and raise. ``pods``:
    the pod's data dir's ``pods/``, recorded so a later :func:`sweep` knows when it is gone."""
    if plan.options.mode != "cni":
        return []
    _config.ensure_state_dir(_config.IPAM_DIR)
    _config.ensure_state_dir(STATE_DIR)
    sweep()
    steps: list[_Step] = []
    _record(uuid, steps, pods)
    netns = str(_netns.create(uuid))
    results: list[Result] = []
    try:
        for net in plan.networks:
            config = json.loads(net.config)
            conf = _config.NetConf(net.name, str(config["type"]), config, net.source)
            args = ";".join(f"{k}={v}" for k, v in net.args)
            steps.append(_Step(net.name, net.ifname, args, config, None))
            _record(uuid, steps)
            out = execute(
                "ADD",
                conf,
                config,
                container_id=uuid,
                netns=netns,
                ifname=net.ifname,
                cni_args=args,
            )
            result = parse_result(out, f"network {net.name!r}: the {conf.type} plugin's result")
            steps[-1] = _Step(net.name, net.ifname, args, config, result.raw)
            _record(uuid, steps)
            results.append(result)
        if plan.ports:
            first = steps[0]
            config = _portmap_config(first.config, first.result or {}, plan.ports)
            conf = _config.NetConf(first.name, "portmap", config, "--port")
            steps.append(_Step("portmap", PORTMAP_IFNAME, "", config, None))
            _record(uuid, steps)
            out = execute(
                "ADD", conf, config, container_id=uuid, netns=netns, ifname=PORTMAP_IFNAME
            )
            steps[-1] = _Step(
                "portmap", PORTMAP_IFNAME, "", config, parse_result(out, "portmap").raw
            )
            _record(uuid, steps)
    except BaseException:
        detach(uuid)
        raise
    return results


def _load(uuid: str) -> dict[str, Any] | None:
    path = _state(uuid)
    try:
        doc = json.loads(read_capped(path, 4 << 20))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LocalStateError(f"{path} is damaged: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise LocalStateError(f"{path} is not trustd's network record")
    return doc


def detach(uuid: str) -> list[str]:
    """CNI DEL of everything the pod's record holds, then the netns; the problems met."""
    doc = _load(uuid)
    problems: list[str] = []
    if doc is None:
        with contextlib.suppress(OSError):
            _netns.remove(uuid)
        return problems
    netns = str(_netns.netns_path(uuid))
    if not Path(netns).exists():
        netns = ""  # the spec: DEL must still release what it can (IPAM; ptp then skips iptables)
    retry = False  # a DEL failed for an ADD that had succeeded: keep the netns for the next try
    for step in reversed(doc["steps"]):
        config = _with_prev(step["config"], step.get("result"))
        conf = _config.NetConf(step["name"], str(config["type"]), config, "net.json")
        try:
            execute(
                "DEL",
                conf,
                config,
                container_id=uuid,
                netns=netns,
                ifname=step["ifname"],
                cni_args=step.get("args", ""),
            )
        except TrustdError as exc:
            retry = retry or step.get("result") is not None
            problems.append(
                exc.message.replace("failed to setup network", "failed to tear down network")
            )
    if not retry:  # else the netns stays with the record for the next try (gc): without it,
        try:  # ptp's DEL cannot find the addresses it masqueraded, and their rules would leak
            _netns.remove(uuid)
        except OSError as exc:
            problems.append(f"netns {netns}: {exc}")
    if not problems:
        with contextlib.suppress(FileNotFoundError):
            _state(uuid).unlink()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return problems


def addresses(uuid: str) -> tuple[str, str] | None:
    """(the pod's address, the host side's) on the pod's first network that has a gateway,
    from root's record: where a host service sees the pod and where the pod reaches it (the
    metadata service); None without a CNI network."""
    doc = _load(uuid)
    for step in doc["steps"] if doc else []:
        for ip in (step.get("result") or {}).get("ips", []):
            if not isinstance(ip, dict):
                continue
            address, gateway = ip.get("address"), ip.get("gateway")
            if isinstance(address, str) and isinstance(gateway, str):
                return address.split("/", 1)[0], gateway
    return None


def host_address(uuid: str) -> str | None:
    """The host-side address of the pod's first network (its gateway), for services on the
    host the pod should reach (the metadata service): None without a CNI network."""
    found = addresses(uuid)
    return found[1] if found else None


def public_info(results: Sequence[Result], plan: PodNetPlan) -> bytes:
    """rkt's net-info.json: each network's name, interface and address, for list/status."""
    out = []
    for net, result in zip(plan.networks, results, strict=False):
        ip = result.ips[0].address.split("/")[0] if result.ips else ""
        out.append({"netName": net.name, "ifName": net.ifname, "ip": ip})
    return json.dumps(out, indent=2).encode()


class Attaching:
    """CNI ADD started in a worker thread while root does other work before the pod runs
    (its measurement): the plugins take tens of milliseconds, mostly in iptables. No app
    code runs before :meth:`ready` has the results; :meth:`abandon` undoes it all."""

    def __init__(self, uuid: str, plan: PodNetPlan, pods: Path | None = None) -> None:
        self.uuid, self.plan = uuid, plan
        self._pool: ThreadPoolExecutor | None = None
        if plan.options.mode != "cni":
            return  # attach() has nothing to do: no thread, and no concurrent.futures (issue #14)
        # Loaded here: concurrent.futures brings logging, threading and traceback, which a
        # pod without CNI networks never needs.
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cni")
        self._future: Future[list[Result]] = self._pool.submit(attach, uuid, plan, pods)

    def _results(self) -> list[Result]:
        if self._pool is None:
            return []
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()

    def abandon(self) -> None:
        with contextlib.suppress(TrustdError, OSError):
            self._results()
        detach(self.uuid)

    @contextlib.contextmanager
    def ready(self, pod_dir: Path) -> Iterator[list[Result]]:
        """The pod on its networks for the block (its /etc files and net-info.json
        written); always torn down after."""
        try:
            results = self._results()  # a failed ADD was undone by attach itself
        except BaseException:
            detach(self.uuid)
            raise
        try:
            write_sources(pod_dir / "private", self.plan.options, results)
            if results:
                atomic_write(pod_dir / PUBLIC, public_info(results, self.plan), mode=0o640)
            yield results
        finally:
            detach(self.uuid)


@contextlib.contextmanager
def pod_network(pod_dir: Path, uuid: str, plan: PodNetPlan) -> Iterator[list[Result]]:
    """The pod on its networks for the duration of the block; always torn down after."""
    with Attaching(uuid, plan, pod_dir.parent.parent).ready(pod_dir) as results:
        yield results
