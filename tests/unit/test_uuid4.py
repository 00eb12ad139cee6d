"""``trustd.shared._uuid4.uuid4``: a pod's UUID without the ``uuid`` module (issue #14) is a
valid RFC 4122 version 4 UUID, spelt as ``str(uuid.uuid4())`` spells one."""

from __future__ import annotations

import uuid

from trustd.shared._uuid4 import uuid4

SAMPLES = 512


def test_each_is_an_rfc4122_version_4_uuid_in_canonical_text() -> None:
    for _ in range(SAMPLES):
        text = uuid4()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case hex, 8-4-4-4-12


def test_the_122_other_bits_are_random_and_the_6_fixed_ones_fixed() -> None:
    """Every bit outside the version and variant takes both values over the samples; those
    six take one (what uuid.uuid4 sets). A bit stuck by a wrong mask would show here."""
    values = [uuid.UUID(uuid4()).int for _ in range(SAMPLES)]
    ones = [sum((v >> bit) & 1 for v in values) for bit in range(128)]
    fixed = {76: 0, 77: 0, 78: 1, 79: 0, 62: 0, 63: 1}  # version nibble 0100, variant 10
    for bit in range(128):
        if bit in fixed:
            assert ones[bit] == SAMPLES * fixed[bit], bit
        else:
            assert 0 < ones[bit] < SAMPLES, bit
    assert len(set(values)) == SAMPLES
