"""The appc metadata service, served for each registered pod inside the pod's own network
namespace (``http://127.0.0.1:18112/<token>``; ADR 0006), as an unprivileged process with no
capabilities (``python -I -m trustd.unprivileged.mds``, started by the pod's init)."""

from trustd.unprivileged.mds.server import MDS_PORT, MetadataService, PodMetadata

__all__ = ["MDS_PORT", "MetadataService", "PodMetadata"]
