"""Isolation that needs root over the host: pod cgroups and SELinux labels of host files.

What an isolation setting *is* (capability sets, seccomp specs and their digests) and how a
process confines itself lives in :mod:`trustd.shared.isolation`.
"""
