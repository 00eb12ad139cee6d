"""Pod states as rkt printed them."""

from __future__ import annotations

import enum


class PodState(enum.StrEnum):
    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    EXITED = "exited"
    DELETING = "deleting"
    EXITED_GARBAGE = "exited garbage"
    GARBAGE = "garbage"
