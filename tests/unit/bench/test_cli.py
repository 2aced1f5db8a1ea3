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


def test_two_runs_at_once_each_name_their_own_database_and_redis_index():
    default = parse_args([])
    assert (default.bench_db, default.bench_redis_db) == ("kcm_bench", 14)
    second = parse_args(["--bench-db", "kcm_bench_b", "--bench-redis-db", "11"])
    assert (second.bench_db, second.bench_redis_db) == ("kcm_bench_b", 11)


@pytest.mark.parametrize("argv", [["--bench-db", 'kcm"; DROP'], ["--bench-db", "Kcm-Bench"], ["--bench-db", "9lives"],
                                  ["--bench-redis-db", "0"]])
def test_a_database_name_that_needs_quoting_or_an_index_without_one_below_is_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert argv[0] in capsys.readouterr().err


def test_help_documents_the_state_options(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--bench-db NAME" in out and "--bench-redis-db N" in out and "NAME_scale" in out
    assert "--bench-db kcm_bench_b --bench-redis-db 11" in out  # the description: two runs at once


def test_scaling_benchmarks_run_on_a_private_production_like_broker_unless_told_otherwise(capsys):
    """bench/broker.py: Kafka's default group.initial.rebalance.delay.ms; --scaling-broker shared for the test one."""
    from bench.harness import Harness
    from bench.throughput import scaling_broker

    default, shared = parse_args([]), parse_args(["--scaling-broker", "shared"])
    assert default.scaling_broker == "private" and shared.scaling_broker == "shared"
    harness = Harness.__new__(Harness)  # no services: only the choice of broker is under test
    harness.args = shared
    assert harness.scaling() is harness
    assert "delay.ms=0" in scaling_broker(harness)
    harness.args = default
    assert "delay.ms=3000 (Kafka's default)" in scaling_broker(harness)
    with pytest.raises(SystemExit):
        parse_args(["--scaling-broker", "remote"])
    assert "invalid choice" in capsys.readouterr().err
