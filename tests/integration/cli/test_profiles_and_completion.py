"""Profiles in a private file (a wider mode is refused), the order of --api/--profile/env/profile, completion."""
from __future__ import annotations

import socket
import stat

import yaml


def test_a_profile_written_by_the_cli_is_private_and_used_and_a_readable_one_is_refused(cli, live_api,
                                                                                       config_home):
    saved = cli("profile", "set", "local", "--api", live_api.url, "--token-stdin", input=live_api.token + "\n",
                auth=False)
    assert saved.returncode == 0, saved.err
    path = config_home / "kcm" / "profiles.yaml"
    assert saved.out.strip() == f"profile local saved in {path} (current)"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(path.read_text()) == {"current": "local", "profiles": {
        "local": {"api": live_api.url, "token": live_api.token}}}
    listed = cli("profile", "list", auth=False)
    assert listed.out.strip() == f"* local  {live_api.url}  (token set)" and live_api.token not in listed.out

    assert cli("consumers", "list", auth=False).json == []  # the current profile, no KCM_* settings
    closed = cli("profile", "set", "closed", "--api", "http://127.0.0.1:9", auth=False)
    assert closed.returncode == 0 and "(current)" not in closed.out
    assert cli("profile", "use", "closed", auth=False).out.strip() == "current profile: closed"
    assert cli("consumers", "list", "--token", live_api.token, auth=False).returncode == 3
    assert cli("profile", "use", "local", auth=False).returncode == 0
    assert cli("--profile", "local", "consumers", "list", auth=False).json == []
    unknown = cli("consumers", "list", "--profile", "prod", auth=False)
    assert unknown.returncode == 2 and "no profile 'prod'" in unknown.err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli("consumers", "list", "--api", f"http://127.0.0.1:{port}", auth=False).returncode == 3  # flag first
    wrong_token = cli("consumers", "list", auth=False, env={"KCM_TOKEN": "kcm_not-a-real-token-0123456789abcdef"})
    assert wrong_token.returncode == 1 and "401" in wrong_token.err  # the environment before the current profile

    path.chmod(0o644)
    refused = cli("consumers", "list", auth=False)
    assert refused.returncode == 2
    assert refused.err.strip() == (f"Error: {path} has mode 0644, but it holds API tokens: kcm reads it only when "
                                   f"private to you (chmod 600 {path})")
    assert cli("consumers", "list").json == []  # KCM_API_URL and KCM_TOKEN need no profile: the file is not read
    path.chmod(0o600)
    assert cli("profile", "remove", "local", auth=False).returncode == 0
    assert yaml.safe_load(path.read_text()) == {"current": None, "profiles": {"closed": {"api": "http://127.0.0.1:9"}}}


def test_completion_prints_each_shells_script_and_completes_commands(kcm):
    scripts = {shell: kcm("completion", shell) for shell in ("bash", "zsh", "fish")}
    assert all(done.returncode == 0 for done in scripts.values())
    assert "_KCM_COMPLETE=bash_complete" in scripts["bash"].out and "complete -o nosort -F" in scripts["bash"].out
    assert scripts["zsh"].out.startswith("#compdef kcm")
    assert "complete --no-files --command kcm" in scripts["fish"].out
    completed = kcm(env={"_KCM_COMPLETE": "bash_complete", "COMP_WORDS": "kcm consumers st", "COMP_CWORD": "2"})
    assert completed.out.split() == ["plain,start", "plain,status", "plain,stop"]
    assert kcm("completion", "tcsh").returncode == 2
