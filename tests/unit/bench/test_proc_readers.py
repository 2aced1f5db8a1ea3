"""The /proc readers behind the footprint and control benchmarks, on this very process and a reaped child."""
from __future__ import annotations

import os
import subprocess
import sys

from bench.procfs import busy_percent, cpu_of, cpu_seconds, cpu_snapshot, process_gone, pss_mb, rss_mb


def test_resident_memory_of_a_live_python_process_is_megabytes():
    assert 5 < rss_mb(os.getpid()) < 10_000
    pss = pss_mb(os.getpid())
    assert pss is None or 0 < pss <= rss_mb(os.getpid()) * 1.1


def test_cpu_seconds_grow_with_work():
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before


def test_cpu_of_leaves_out_processes_that_are_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert list(cpu_of([os.getpid(), child.pid])) == [os.getpid()]


def test_a_process_is_gone_once_it_exited_and_alive_before():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_gone(child.pid) is False
        child.kill()
        child.wait()
        assert process_gone(child.pid) is True
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_zombie_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert process_gone(child.pid) is True
    finally:
        child.wait()


def test_machine_busy_percent_is_a_share_of_all_cores():
    before = cpu_snapshot()
    sum(i * i for i in range(500_000))
    value = busy_percent(before, cpu_snapshot())
    assert value is None or 0 <= value <= 100
    assert busy_percent((10, 100), (60, 200)) == 50
