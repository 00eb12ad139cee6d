"""rkt's ``--net`` flag grammar: pflag's NoOptDefVal ``default`` (issue #16)."""

from __future__ import annotations

import argparse

import pytest

from trustd.cli._grammar import reparse
from trustd.cli._net import net_options
from trustd.cli.main import build_parser


def parse(*words: str) -> argparse.Namespace:
    args = build_parser().parse_args(list(words))
    reparse(args)
    return args


@pytest.mark.parametrize(
    ("words", "net", "images"),
    [
        (["run", "--net", "IMG"], "default", ["IMG"]),  # bare: default; IMG stays the image
        (["run", "IMG", "--net"], "default", ["IMG"]),
        (["run", "A", "--net", "B"], "default", ["A", "B"]),  # among the images too
        (["run", "--net=host", "IMG"], "host", ["IMG"]),
        (["run", "--net=", "IMG"], "", ["IMG"]),  # empty after '=': rkt's default too
        (["run", "--net", "none"], "default", ["none"]),  # pflag: a value only after '='
        (["run", "IMG", "--net=default-restricted,lonet:K=V"], None, ["IMG"]),
    ],
)
def test_bare_net_means_default_and_a_value_only_after_equals(
    words: list[str], net: str | None, images: list[str]
) -> None:
    args = parse(*words)
    assert args.images == images
    if net is not None:
        assert args.net == net
    else:
        assert args.net == words[-1].split("=", 1)[1]
    options = net_options(args)
    assert options is not None and options.mode == ("host" if net == "host" else "cni")


def test_run_prepared_takes_bare_net_too() -> None:
    args = parse("run-prepared", "--net", "abcd")
    assert args.net == "default" and args.uuid == "abcd"


def test_no_net_flag_leaves_the_network_unset() -> None:
    assert parse("run", "IMG").net is None
