"""One handler per request kind of the root program (ADR 0010): the closed set of root operations.

Each handler builds what it needs from the envelope's directories (keystore, policy and
measurement config are root-owned configuration; the shared store is re-checked wherever it
is read) and calls the executor. Nothing here parses command lines or talks to a network.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustd.privileged._output import output_dir, write_output
from trustd.privileged.executor._measure import MeasureConfig, load_config
from trustd.shared._dataclass import frozen
from trustd.shared.request import (
    AttestActivate,
    AttestIdentity,
    AttestKey,
    AttestQuote,
    AttestServe,
    AttestStatus,
    AttestStopTpm,
    CollectPods,
    CollectTrees,
    Enter,
    Envelope,
    Export,
    ExportImage,
    MetadataServiceStart,
    PodReferences,
    Prepare,
    Remove,
    RemoveTrees,
    Render,
    Request,
    Run,
    RunPrepared,
    Stop,
    encode_use,
)

if TYPE_CHECKING:  # each loaded by the handlers that use it: the attest verbs load none of them
    from trustd.privileged.net import PodNetPlan
    from trustd.privileged.pod import PodStore
    from trustd.privileged.treestore.datadir import DataDir
    from trustd.shared.keystore import Keystore
    from trustd.shared.net import NetOptions
    from trustd.shared.policy import Policy


@frozen
class Context:
    """What every root operation works on, from the envelope's directories."""

    data: Path
    system_config: Path
    local_config: Path

    @classmethod
    def of(cls, envelope: Envelope) -> Context:
        d = envelope.dirs
        return cls(Path(d.data), Path(d.system_config), Path(d.local_config))

    def pods(self) -> PodStore:
        from trustd.privileged.pod import PodStore  # noqa: PLC0415

        return PodStore(self.data)

    def keystore(self) -> Keystore:
        from trustd.shared.keystore import Keystore  # noqa: PLC0415

        return Keystore(self.system_config, self.local_config)

    def store(self) -> DataDir:
        """The data dir, checked (root-owned, no group-writable ancestor), with ``private/``."""
        from trustd.privileged.treestore.datadir import open_data_dir  # noqa: PLC0415

        return open_data_dir(self.data)

    def policy(self) -> Policy:
        """The policy file that decides every run (no file is an error: no silent default)."""
        from trustd.privileged._policycache import RootPolicyCache  # noqa: PLC0415
        from trustd.shared.policy import load_effective  # noqa: PLC0415

        return load_effective(self.system_config, self.local_config, RootPolicyCache(self.data))

    def measure(self) -> MeasureConfig:
        return load_config(self.system_config, self.local_config)

    def network(self, options: NetOptions) -> PodNetPlan:
        """The pod's networks from root-owned net.d configurations only (ADR 0019)."""
        from trustd.privileged.net import resolve  # noqa: PLC0415

        return resolve(options, self.local_config, self.system_config)


def _store_key(image: str) -> Any:
    from trustd.shared.imageid import StoreKey  # noqa: PLC0415

    return StoreKey.parse(image)


def _prepare_pod(
    ctx: Context,
    request: Run | Prepare,
    policy: Policy,
    measure: MeasureConfig,
    *,
    moving_on: bool = False,
) -> Any:
    from trustd.privileged.executor.prepare import prepare  # noqa: PLC0415

    return prepare(
        request.pod,
        ctx.store(),
        ctx.keystore(),
        ctx.pods(),
        policy=policy,
        measurement=measure.mode,
        network=ctx.network(request.pod.network),
        moving_on=moving_on,
    )


def run(ctx: Context, request: Run) -> int:
    from trustd.privileged.executor.run import run_prepared_pod  # noqa: PLC0415

    # One policy and one measurement config for the whole start, read once: the policy
    # that decided is the one measured (issue #14: no double work).
    policy, measure = ctx.policy(), ctx.measure()
    if request.pod.mds_register:  # rkt's check, before any pod is made (ADR 0025)
        from trustd.privileged.executor._mdsreg import require_daemon  # noqa: PLC0415

        fly = request.pod.flavor == "fly"  # fly runs in the host's network namespace
        require_daemon(ctx.data, "host" if fly else request.pod.network.mode)
    prepared = _prepare_pod(ctx, request, policy, measure, moving_on=True)  # run_prepared_pod
    if request.uuid_file:
        write_output(Path(request.uuid_file), (prepared.pod.uuid + "\n").encode())
    return run_prepared_pod(prepared, ctx.pods(), measure, policy)


def prepare(ctx: Context, request: Prepare) -> int:
    prepared = _prepare_pod(ctx, request, ctx.policy(), ctx.measure())
    prepared.lock.close()
    print(prepared.pod.uuid)
    return 0


def run_prepared(ctx: Context, request: RunPrepared) -> int:
    from trustd.privileged.executor.run import run_prepared as run_it  # noqa: PLC0415

    return run_it(
        request.uuid,
        ctx.store(),
        ctx.keystore(),
        ctx.pods(),
        measure=ctx.measure(),
        policy=ctx.policy(),
        mds_register=request.mds_register,
        interactive=request.interactive,
        network=None if request.network is None else ctx.network(request.network),
        hostname=request.hostname,
        ipc=request.ipc,
    )


def enter(ctx: Context, request: Enter) -> int:
    """The running pod is gated again (policy and keyring in force now) before joining it."""
    from trustd.privileged.executor.enter import enter as enter_pod  # noqa: PLC0415
    from trustd.privileged.executor.enter import gate_for_enter  # noqa: PLC0415

    pod = ctx.pods().find(request.uuid)
    gated = gate_for_enter(
        pod, ctx.store(), ctx.keystore(), ctx.policy(), measurement=ctx.measure().mode
    )
    return enter_pod(pod, gated, request.app, list(request.command))


def stop(ctx: Context, request: Stop) -> int:
    from trustd.privileged.executor.lifecycle import stop_pods  # noqa: PLC0415

    return stop_pods(ctx.pods(), request.uuids, force=request.force)


def remove(ctx: Context, request: Remove) -> int:
    from trustd.privileged.executor.lifecycle import remove_pods  # noqa: PLC0415

    return remove_pods(ctx.pods(), request.uuids)


def collect(ctx: Context, request: CollectPods) -> int:
    from trustd.privileged.executor._collect import collect_pods  # noqa: PLC0415

    return collect_pods(
        ctx.pods(),
        grace=timedelta(seconds=request.grace_seconds),
        expire_prepared=timedelta(seconds=request.expire_prepared_seconds),
        mark_only=request.mark_only,
    )


def export(ctx: Context, request: Export) -> int:
    from trustd.privileged.executor.export import export as export_app  # noqa: PLC0415

    pod = ctx.pods().find(request.uuid)
    export_app(pod, request.app, Path(request.output), overwrite=request.overwrite)
    return 0


def render(ctx: Context, request: Render) -> int:
    from trustd.privileged.treestore.render import render_into  # noqa: PLC0415

    render_into(
        ctx.data,
        _store_key(request.image),
        ctx.keystore(),
        Path(request.dest),
        rootfs_only=request.rootfs_only,
        overwrite=request.overwrite,
        allow_insecure=request.allow_insecure,
        expected=(request.expected_name, request.expected_version),
    )
    return 0


def export_image(ctx: Context, request: ExportImage) -> int:
    from trustd.privileged.treestore.export import export_image as export_it  # noqa: PLC0415

    export_it(
        ctx.data,
        _store_key(request.image),
        Path(request.output),
        overwrite=request.overwrite,
        expected=(request.expected_name, request.expected_version),
    )
    return 0


def pod_references(ctx: Context, _request: PodReferences) -> int:
    """Printed as JSON on stdout, for the front end's index part of image gc and rm."""
    from trustd.privileged.executor.images import image_use  # noqa: PLC0415

    with ctx.store() as data:
        print(encode_use(image_use(data)))
    return 0


def collect_trees(ctx: Context, request: CollectTrees) -> int:
    from trustd.privileged.executor.images import collect_trees as collect_them  # noqa: PLC0415

    with ctx.store() as data:
        collect_them(data, request.remaining)
    return 0


def remove_trees(ctx: Context, request: RemoveTrees) -> int:
    from trustd.privileged.executor.images import remove_trees as remove_them  # noqa: PLC0415

    with ctx.store() as data:
        remove_them(data, request.images)
    return 0


def _measurer(ctx: Context) -> Any:
    from trustd.privileged.measure import Measurer  # noqa: PLC0415

    config = ctx.measure()
    return Measurer(ctx.data, pcr=config.pcr, tcti=config.tcti)


def attest_status(ctx: Context, _request: AttestStatus) -> int:
    config = ctx.measure()
    measurer = _measurer(ctx)
    print(measurer.status().describe())
    how = "from measure.json" if config.pcr is not None else "the backend's default"
    print(f"mode: {config.mode}\npcr: {measurer.pcr} ({how}; {_resettable(measurer.pcr)})")
    return 0


def _resettable(pcr: int) -> str:
    from trustd.privileged.measure import RESETTABLE_PCRS  # noqa: PLC0415

    if pcr in RESETTABLE_PCRS:
        return "resettable by whoever reaches the TPM"
    return "not resettable until the TPM resets"


def attest_key(ctx: Context, request: AttestKey) -> int:
    write_output(Path(request.out), _measurer(ctx).ak_public_pem())
    return 0


def attest_quote(ctx: Context, request: AttestQuote) -> int:
    pcrs = list(request.pcrs) if request.pcrs else [_measurer(ctx).pcr]
    _measurer(ctx).quote(bytes.fromhex(request.nonce), pcrs, output_dir(Path(request.out)))
    print(f"quote of PCR {','.join(map(str, pcrs))} written to {request.out}")
    return 0


def attest_serve(ctx: Context, request: AttestServe) -> int:
    """Quote for the unprivileged HTTPS attester until it exits (executor/_attestd.py)."""
    from trustd.privileged.executor._attestd import serve  # noqa: PLC0415

    return serve(_measurer(ctx), request)


def metadata_service(ctx: Context, request: MetadataServiceStart) -> int:
    """Bind the daemon's sockets, then become it as rkt-mds (executor/_mdsd.py)."""
    from trustd.privileged.executor._mdsd import serve  # noqa: PLC0415

    ctx.store()  # the data dir must be root's: the registration socket goes under it
    return serve(ctx.data, request)


def attest_stop_tpm(ctx: Context, _request: AttestStopTpm) -> int:
    """Stop the embedded swtpm of the data dir; with another backend there is nothing to stop."""
    from trustd.privileged.measure import stop_embedded  # noqa: PLC0415

    backend = _measurer(ctx).status()
    if backend.kind != "swtpm":
        print(f"the {backend.kind} backend is in use ({backend.reason}): no embedded swtpm to stop")
        return 0
    if stop_embedded(ctx.data):
        print(
            f"stopped the embedded swtpm of {ctx.data} (its PCRs are gone; the next use starts"
            " a new one and a new event-log epoch)"
        )
    else:
        print(f"no embedded swtpm runs for {ctx.data}")
    return 0


def attest_identity(ctx: Context, request: AttestIdentity) -> int:
    """Write the EK (TPM2B_PUBLIC), its NV certificate (DER) and the AK into ``out``."""
    from trustd.shared.attest.registry import check_ak  # noqa: PLC0415

    measurer = _measurer(ctx)
    endorsement, ak_public, ak_pem = measurer.identity()
    out = output_dir(Path(request.out))
    _, name = check_ak(ak_public)
    write_output(out / "ek.pub", endorsement.ek_public)
    write_output(out / "ak.pub", ak_public)
    write_output(out / "ak.pem", ak_pem)
    write_output(out / "ak.name", name.hex().encode())
    if endorsement.ek_cert is not None:
        write_output(out / "ek.crt", endorsement.ek_cert)
    target = measurer.target
    chain = None if target is None or target.socket_dir is None else target.socket_dir
    if chain is not None and (chain / "ek-intermediates.pem").is_file():
        write_output(out / "ek-intermediates.pem", (chain / "ek-intermediates.pem").read_bytes())
    cert = "with its certificate from NV" if endorsement.ek_cert else "without a certificate"
    print(f"{endorsement.ek_type} EK ({cert}) and AK written to {request.out}")
    if chain is not None and (chain / "ek-ca.pem").is_file():
        print(f"the embedded swtpm's local manufacturer CA: {chain / 'ek-ca.pem'}")
    return 0


def attest_activate(ctx: Context, request: AttestActivate) -> int:
    from trustd.shared.attest.credential import Credential  # noqa: PLC0415

    credential = Credential.from_file(bytes.fromhex(request.credential), "the challenge")
    secret = _measurer(ctx).activate(credential.id_object, credential.encrypted_secret)
    write_output(Path(request.out), secret)
    print(f"credential activated; the secret is in {request.out}")
    return 0


HANDLERS: dict[type[Any], Callable[[Context, Any], int]] = {
    Run: run,
    Prepare: prepare,
    RunPrepared: run_prepared,
    Enter: enter,
    Stop: stop,
    Remove: remove,
    CollectPods: collect,
    Export: export,
    Render: render,
    ExportImage: export_image,
    PodReferences: pod_references,
    CollectTrees: collect_trees,
    RemoveTrees: remove_trees,
    AttestStatus: attest_status,
    AttestKey: attest_key,
    AttestQuote: attest_quote,
    AttestStopTpm: attest_stop_tpm,
    AttestIdentity: attest_identity,
    AttestActivate: attest_activate,
    AttestServe: attest_serve,
    MetadataServiceStart: metadata_service,
}


def handle(envelope: Envelope) -> int:
    request: Request = envelope.request
    return HANDLERS[type(request)](Context.of(envelope), request)
