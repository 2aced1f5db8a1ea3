"""The lag monitor may load confluent-kafka; the supervisor daemon must not load the monitor (or Kafka), and the
monitor takes nothing from the worker side: secrets and broker rules come from schema/ like the worker's."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_supervisor_daemon_loads_neither_the_lag_monitor_nor_kafka():
    probe = "import json, sys\nimport supervisor.daemon, supervisor.__main__\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert [m for m in loaded if m.startswith("supervisor.lag") or m.split(".")[0] == "confluent_kafka"] == []


def test_the_lag_monitor_imports_nothing_from_workers_or_processors():
    offending = []
    for path in sorted((ROOT / "supervisor" / "lag").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            offending += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("workers", "processors", "api")]
    assert offending == []
