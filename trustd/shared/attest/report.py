"""What a verified attestation says happened: the trustd pod starts, ready for JSON output."""

from __future__ import annotations

from trustd.shared.attest.content import Json
from trustd.shared.attest.verified import VerifiedAttestation


def pod_starts(attestation: VerifiedAttestation) -> list[dict[str, Json]]:
    """trustd events grouped by ``data.pod``, in log order.

    Only records that extended a quoted PCR in a quoted bank are reported: a record in a PCR
    the quote does not cover is not vouched for by anything. Events without a pod UUID are
    grouped under ``"pod": null``. Each group is
    ``{"pod": uuid, "pcr": n, "events": [{"recnum": n, "kind": k, "data": {...}}, ...]}``.
    """
    quoted = set(attestation.quote.quote.selection.pcrs())
    starts: dict[str | None, dict[str, Json]] = {}
    for record in attestation.log.records:
        content = record.trustd
        if content is None or not any((alg, record.pcr) in quoted for alg, _ in record.digests):
            continue
        pod = content.data.get("pod")
        key = pod if isinstance(pod, str) else None
        start = starts.setdefault(key, {"pod": key, "pcr": record.pcr, "events": []})
        start["events"].append(
            {"recnum": record.recnum, "kind": content.kind, "data": dict(content.data)}
        )
    return list(starts.values())
