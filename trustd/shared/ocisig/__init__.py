"""Signatures for Docker/OCI images: containers/image simple signing (and its sigstore
payload), the Docker names they speak of, and the identity rules that match them."""

from trustd.shared.ocisig.name import DockerName, DockerReference
from trustd.shared.ocisig.payload import SigningPayload, build_payload, parse_payload

__all__ = ["DockerName", "DockerReference", "SigningPayload", "build_payload", "parse_payload"]
