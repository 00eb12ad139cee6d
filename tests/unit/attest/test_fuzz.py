"""Property tests: random or truncated bytes into every parser raise only AttestFormatError."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.attest._vectors import SWTPM, TOOLS
from trustd.shared.attest import (
    AttestFormatError,
    HashAlg,
    PcrValues,
    encode_pcr_file,
    load_ak_pem,
    load_ak_tpm,
    parse_attest,
    parse_cel,
    parse_firmware_log,
    parse_pcr_file,
    parse_signature,
    replay,
)

SEEDS = {
    parse_attest: (SWTPM / "quote.attest.bin").read_bytes(),
    parse_signature: (SWTPM / "quote.sig.tpmt_signature.bin").read_bytes(),
    load_ak_tpm: (SWTPM / "ak.tpmt_public.bin").read_bytes(),
    load_ak_pem: (SWTPM / "ak.pub.pem").read_bytes(),
    parse_pcr_file: (SWTPM / "quote.pcrs.bin").read_bytes(),
    parse_firmware_log: (TOOLS / "event-sd-boot-fedora37.bin").read_bytes(),
    parse_cel: b'[{"recnum":0,"pcr":16,"digests":[{"hashAlg":"sha1","digest":"'
    + b"00" * 20
    + b'"}],"content_type":"trustd","content":{"kind":"x","data":{}}}]',
}
PARSERS: list[Callable[[bytes], object]] = list(SEEDS)


def _only_domain_errors(parser: Callable[[bytes], object], data: bytes) -> None:
    try:
        result = parser(data)
        if parser in (parse_firmware_log, parse_cel):
            replay(result)  # type: ignore[arg-type]
    except AttestFormatError:
        pass
    except Exception as err:  # the test is that nothing else escapes
        if parser is parse_cel and type(err).__name__ == "QuoteError":
            return  # a readable record whose digest is not its content's hash
        raise AssertionError(f"{parser.__name__} raised {err!r}") from err


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.binary(max_size=600))
def test_random_bytes(parser: Callable[[bytes], object], data: bytes) -> None:
    _only_domain_errors(parser, data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.data())
def test_truncated_and_mutated_real_inputs(
    parser: Callable[[bytes], object], data: st.DataObject
) -> None:
    seed = SEEDS[parser]  # type: ignore[index]
    cut = data.draw(st.integers(0, len(seed)))
    at = data.draw(st.integers(0, max(0, len(seed) - 1)))
    value = data.draw(st.integers(0, 255))
    mutated = seed[:at] + bytes([value]) + seed[at + 1 :]
    _only_domain_errors(parser, seed[:cut])
    _only_domain_errors(parser, mutated)
    _only_domain_errors(parser, seed + data.draw(st.binary(min_size=1, max_size=8)))


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list(HashAlg)),
        st.dictionaries(st.integers(0, 23), st.binary(min_size=64, max_size=64), min_size=1),
        min_size=1,
    )
)
def test_pcr_file_round_trip(values: dict[HashAlg, dict[int, bytes]]) -> None:
    mapping = {alg: {i: v[: alg.size] for i, v in bank.items()} for alg, bank in values.items()}
    pcrs = PcrValues.from_mapping(mapping)
    assert parse_pcr_file(encode_pcr_file(pcrs)) == pcrs
