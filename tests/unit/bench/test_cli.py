"""`python -m bench` arguments: a quick run is one flag away, a typo is refused before anything starts."""
from __future__ import annotations

import pytest

from bench.__main__ import BENCHMARKS, parse_args


def test_every_benchmark_by_default_at_the_issue_sizes():
    args = parse_args([])
    assert args.names == BENCHMARKS
    assert args.runs == 3 and args.messages is None  # None: each benchmark's full-size default
    assert (args.api_consumers, args.api_clients, args.api_seconds) == (500, 32, 20)
    assert (args.idle_consumers, args.cpu_seconds, args.control_runs) == (50, 60, 20)


def test_only_accepts_repeats_and_commas():
    args = parse_args(["--only", "throughput_file,scaling", "--only", "footprint", "--messages", "100000"])
    assert args.names == ["throughput_file", "scaling", "footprint"]
    assert args.messages == 100000


def test_unknown_benchmark_and_zero_runs_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--only", "throughput_fiel"])
    assert "unknown benchmark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--runs", "0"])
