"""`kcm consumers status NAME --watch` on a real pseudo-terminal: the installed script, no `-o`, redraws in place."""
from __future__ import annotations

import errno
import os
import select
import subprocess
import time

from tests.integration.cli.conftest import KCM

CLEAR_SCREEN = "\x1b[2J\x1b[1;1H"  # erase the screen, cursor home (what click.clear writes on a terminal)


def run_on_terminal(args: list[str], env: dict, timeout: float = 60) -> tuple[int, str, str]:
    """``kcm *args`` with stdin and stdout on a new pseudo-terminal: (exit code, what the terminal got, stderr)."""
    leader, follower = os.openpty()
    process = subprocess.Popen([str(KCM), *args], stdin=follower, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    screen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:  # EIO: every copy of the follower side is closed, the process is done
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            screen += chunk
        code = process.wait(max(deadline - time.monotonic(), 1))
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, screen.decode().replace("\r\n", "\n"), process.stderr.read().decode()


def test_watch_on_a_terminal_redraws_a_table_in_place(cli, live_api, consumer_file):
    created = cli("consumers", "create", "-f", consumer_file({
        "name": "cli-watched", "broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders",
        "consumer_group": "cli-watched", "replicas": 2,
        "downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "watched.log"}}]}))
    assert created.returncode == 0, created.err
    cid = created.json["id"]

    env = {**os.environ, "KCM_API_URL": live_api.url, "KCM_TOKEN": live_api.token, "TERM": "xterm"}
    env.pop("KCM_OUTPUT", None)
    code, screen, err = run_on_terminal(
        ["consumers", "status", "cli-watched", "--watch", "--interval", "0.2", "--count", "2"], env)
    assert code == 0, (screen, err)
    assert "Traceback" not in screen + err

    # the screen is cleared and the cursor sent home before each refresh: two renderings, each on a clean screen
    before_first, *renderings = screen.split(CLEAR_SCREEN)
    assert before_first == "" and len(renderings) == 2, screen
    for rendering in renderings:
        lines = rendering.strip("\n").splitlines()
        assert lines[0].startswith("kcm consumers status cli-watched (every 0.2 s; Ctrl-C stops)")
        assert f"consumer:   {cid}" in lines
        assert "state:      UNKNOWN (desired stopped, generation 1)" in lines
        # a table of the two replicas, not a JSON document: the default on a terminal, without -o
        header = next(line for line in lines if line.startswith("REPLICA"))
        assert header.split()[:4] == ["REPLICA", "STATE", "ALIVE", "PID"]
        rows = lines[lines.index(header) + 1:]
        assert [row.split()[0] for row in rows] == ["0", "1"]
        assert all(row.split()[2] == "no" for row in rows)  # ALIVE: nothing runs it
        assert not rendering.lstrip().startswith(("{", "[")), rendering

    # piped, the same table refreshes are printed one below the other: nothing rewrites the screen
    piped = cli("consumers", "status", "cli-watched", "--watch", "--interval", "0.2", "--count", "2", "-o", "table")
    assert piped.returncode == 0, piped.err
    assert "\x1b[" not in piped.out
    assert piped.out.count("kcm consumers status cli-watched (every 0.2 s") == 2
