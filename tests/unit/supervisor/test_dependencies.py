"""The supervisor depends on the shared vocabulary (``schema/``) only: no worker, processor or Kafka code.

A supervisor that imported the worker side would load librdkafka and every processor's dependencies into the
one process that must survive any consumer's failure, and would couple its release to theirs."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("workers", "processors", "confluent_kafka", "tenacity", "marshmallow")
PROBE = ("import json, sys\n"
         "import supervisor.daemon, supervisor.__main__\n"
         "print(json.dumps(sorted(sys.modules)))\n")


def _top(module: str) -> str:
    return module.split(".")[0]


def test_importing_the_supervisor_loads_no_worker_processor_or_kafka_module():
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "supervisor.daemon" in loaded and "schema.dead_letter_store" in loaded
    assert [m for m in loaded if _top(m) in FORBIDDEN] == []


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at the top or inside a function (a lazy import is still a dependency)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_supervisor_module_imports_the_worker_side_even_inside_a_function():
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in sorted((ROOT / "supervisor").glob("*.py"))
                 for line, module in _imports(path) if _top(module) in FORBIDDEN]
    assert offending == []


# the one Kafka admin adapter, shared by the lag monitor and the offsets API: it may import confluent_kafka (and
# nothing else forbidden); the first test above proves the supervisor daemon never loads it
KAFKA_ADAPTER = "schema/kafka_offsets.py"


def test_the_shared_vocabulary_imports_no_kcm_package_but_itself():
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in sorted((ROOT / "schema").rglob("*.py"))
                 for line, module in _imports(path)
                 if _top(module) in FORBIDDEN + ("api", "supervisor")
                 and not (str(path.relative_to(ROOT)) == KAFKA_ADAPTER and _top(module) == "confluent_kafka")]
    assert offending == []


def test_only_the_lag_monitor_and_the_api_use_the_kafka_adapter():
    users = sorted(str(path.relative_to(ROOT)) for top in ("supervisor", "workers", "processors", "schema")
                   for path in (ROOT / top).rglob("*.py")
                   if any(module.startswith("schema.kafka_offsets") or module == "schema" and "kafka_offsets"
                          in path.read_text() for _line, module in _imports(path)))
    assert all(user.startswith("supervisor/lag/") for user in users), users
