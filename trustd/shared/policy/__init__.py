"""One policy gates every fetch and run: per-scope trust, isolation, seccomp, measurement.

Public API: :func:`load_policy` / :func:`load_effective`, :func:`decide_fetch`,
:func:`decide_run` (with :class:`RunInput`) returning a :class:`Decision`, the decision log
(:mod:`trustd.shared.policy.log`), Docker-format seccomp profiles
(:mod:`trustd.shared.policy.seccomp_profile`), lint and audit (:mod:`trustd.shared.policy.lint`,
:mod:`trustd.shared.policy.audit`). Semantics: docs/adr/0008-policy-semantics.md.
"""

from trustd.shared.policy._codec import PolicyFileError, load_policy, loads_policy
from trustd.shared.policy._profiles import profile_paths as seccomp_profile_paths
from trustd.shared.policy.decide import (
    CheckResult,
    Decision,
    RunInput,
    accepts_unsigned,
    allows_unsigned,
    decide_fetch,
    decide_run,
    signed_identity,
)
from trustd.shared.policy.files import (
    POLICY_NAME,
    effective_policy_path,
    load_effective,
    shipped_default,
)
from trustd.shared.policy.model import Policy, Scope
from trustd.shared.policy.scopes import ImageRef, resolve

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
    "allows_unsigned",
    "decide_fetch",
    "decide_run",
    "effective_policy_path",
    "load_effective",
    "load_policy",
    "loads_policy",
    "resolve",
    "seccomp_profile_paths",
    "shipped_default",
    "signed_identity",
]
