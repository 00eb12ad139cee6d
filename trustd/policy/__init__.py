"""One policy gates every fetch and run: per-scope trust, isolation, seccomp, measurement.

Public API: :func:`load_policy` / :func:`load_effective`, :func:`decide_fetch`,
:func:`decide_run` (with :class:`RunInput`) returning a :class:`Decision`, the decision log
(:mod:`trustd.policy.log`), Docker-format seccomp profiles
(:mod:`trustd.policy.seccomp_profile`), lint and audit (:mod:`trustd.policy.lint`,
:mod:`trustd.policy.audit`). Semantics: docs/adr/0008-policy-semantics.md.
"""

from trustd.policy._codec import PolicyFileError, load_policy, loads_policy
from trustd.policy._profiles import profile_paths as seccomp_profile_paths
from trustd.policy.decide import (
    CheckResult,
    Decision,
    RunInput,
    accepts_unsigned,
    decide_fetch,
    decide_run,
)
from trustd.policy.files import POLICY_NAME, effective_policy_path, load_effective, shipped_default
from trustd.policy.model import Policy, Scope
from trustd.policy.scopes import ImageRef, resolve

__all__ = [
    "POLICY_NAME",
    "CheckResult",
    "Decision",
    "ImageRef",
    "Policy",
    "PolicyFileError",
    "RunInput",
    "Scope",
    "accepts_unsigned",
    "decide_fetch",
    "decide_run",
    "effective_policy_path",
    "load_effective",
    "load_policy",
    "loads_policy",
    "resolve",
    "seccomp_profile_paths",
    "shipped_default",
]
