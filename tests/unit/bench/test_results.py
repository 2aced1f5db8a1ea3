"""Result files and BENCHMARKS.md: verdicts, the rendered summary, and the kept hand-written analysis."""
from __future__ import annotations

import json

from bench.observe import Window
from bench.results import (
    NOTES_MARKER,
    Result,
    Target,
    format_table,
    regenerate_markdown,
    render_markdown,
    write_result,
)
from bench.stack import with_database, with_redis_db

MACHINE = {"cpu_model": "Test CPU", "cores": 2, "memory_gib": 4.0, "kernel": "6.1", "load_avg_at_start": [0.1, 0.2],
           "python": "3.11", "confluent_kafka": "2.6", "librdkafka": "2.6"}


def _result(value: float | None = 0.95) -> Result:
    return Result(name="throughput_file", title="Throughput, file sink", baseline="bare loop", params={"messages": 10},
                  columns=["side", "msg/s"], rows=[["bare", "100"], ["kcm", "95"]], figures={"kcm": 95},
                  runs=[{"bare": 100, "kcm": 95}], ratio=value, ratio_label="kcm ÷ bare",
                  targets=[Target(label="kcm ÷ bare", value=value, op=">=", target=0.9)])


def test_target_verdicts_follow_the_direction_of_the_target():
    assert Target("ratio", 0.95, ">=", 0.9).met is True
    assert Target("p99", 30.0, "<", 25).met is False
    assert Target("p99", None, "<", 25).met is None


def test_a_result_is_met_only_when_every_target_is_and_unmeasured_when_one_is_missing():
    assert _result(0.95).met is True
    assert _result(0.5).met is False
    assert _result(None).met is None


def test_result_json_carries_figures_targets_machine_and_commit(tmp_path):
    path = write_result(_result(), machine_info=MACHINE, commit="abc123", date="2026-01-01T00:00:00Z",
                        directory=tmp_path)
    data = json.loads(path.read_text())
    assert path.name == "throughput_file.json"
    assert data["ratio"] == 0.95 and data["met"] is True
    assert data["targets"][0] == {"label": "kcm ÷ bare", "value": 0.95, "op": ">=", "target": 0.9, "unit": "",
                                  "met": True}
    assert data["machine"]["cpu_model"] == "Test CPU" and data["kcm_commit"] == "abc123"
    assert not list(tmp_path.glob("*.tmp"))


def test_markdown_shows_each_figure_beside_its_target_and_the_machine():
    data = _result(0.5).as_dict(MACHINE, "abc123", "2026-01-01T00:00:00Z")
    text = render_markdown([data])
    assert "| 1 | [Throughput, file sink](#throughput_file) | kcm ÷ bare | 0.500 | >= 0.9 | **not met** |" in text
    assert "Test CPU, 2 cores" in text
    assert "make bench" in text


def test_regenerating_keeps_the_analysis_below_the_marker(tmp_path):
    results, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    write_result(_result(), machine_info=MACHINE, commit="abc", date="d", directory=results)
    md.write_text(f"old figures\n{NOTES_MARKER}\n## Analysis\nthe hot loop is fine\n")
    regenerate_markdown(md, results)
    text = md.read_text()
    assert "old figures" not in text
    assert text.count(NOTES_MARKER) == 1 and "the hot loop is fine" in text
    assert text.index("## Summary") < text.index(NOTES_MARKER)


def test_table_columns_are_aligned():
    lines = format_table(["a", "long header"], [["xxxxx", "1"]]).splitlines()
    assert lines[0].index("long header") == lines[2].index("1")


def test_window_rate_counts_only_what_arrived_after_the_first_sighting():
    window = Window(first_at=10.0, first_count=1000, last_at=12.0, total=11000)
    assert window.messages_per_s == 5000
    assert Window(first_at=1.0, first_count=5, last_at=1.0, total=5).messages_per_s is None


def test_bench_urls_point_at_the_bench_database_and_redis_index():
    assert with_database("postgresql+psycopg2://kcm:kcm@127.0.0.1:15432/kcm", "kcm_bench") == \
        "postgresql+psycopg2://kcm:kcm@127.0.0.1:15432/kcm_bench"
    assert with_redis_db("redis://127.0.0.1:16379/0", 14) == "redis://127.0.0.1:16379/14"
    assert with_redis_db("redis://127.0.0.1:16379", 14) == "redis://127.0.0.1:16379/14"


def test_steady_rate_starts_at_a_quarter_of_the_total():
    samples = [(10.0, 100), (10.5, 300), (11.0, 600), (12.0, 1000)]
    window = Window(first_at=10.0, first_count=100, last_at=12.0, total=1000, samples=samples)
    assert window.steady_messages_per_s() == (1000 - 300) / (12.0 - 10.5)
    assert Window(first_at=1.0, first_count=1, last_at=2.0, total=10, samples=[]).steady_messages_per_s() is None
