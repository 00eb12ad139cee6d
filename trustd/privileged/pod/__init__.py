"""Pods on disk: a directory per pod, its state the directory it sits in, plus a flock."""

from trustd.privileged.pod.lifecycle import Pod, PodStore
from trustd.privileged.pod.model import PodState

__all__ = ["Pod", "PodState", "PodStore"]
