"""The appc metadata service, served by each registered pod's init inside the pod's own
network namespace (``http://127.0.0.1:18112/<token>``; ADR 0006)."""

from trustd.privileged.mds.server import MDS_PORT, MetadataService, PodMetadata, hmac_key

__all__ = ["MDS_PORT", "MetadataService", "PodMetadata", "hmac_key"]
