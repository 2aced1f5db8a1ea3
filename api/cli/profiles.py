"""Profiles: named API addresses and tokens in ``<config dir>/kcm/profiles.yaml``, a file that must be private.

The directory is click's ``get_app_dir('kcm')`` (``$XDG_CONFIG_HOME/kcm``, by default ``~/.config/kcm``). The
file holds tokens, so kcm refuses to read it (exit 2) when its mode gives group or others any access, or when
another user owns it; ``kcm profile set`` writes it with mode 0600 in a 0700 directory.

Where the address and token come from, first match wins, each value on its own: ``--api``/``--token``; the
profile named by ``--profile``/``KCM_PROFILE``; ``KCM_API_URL``/``KCM_TOKEN``; the file's current profile;
``http://127.0.0.1:8000`` and no token.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import NamedTuple

import click

from api.cli.errors import BadInput

DEFAULT_API = "http://127.0.0.1:8000"
FILE_NAME = "profiles.yaml"


class Target(NamedTuple):
    api: str
    token: str | None


def profiles_path() -> Path:
    return Path(click.get_app_dir("kcm")) / FILE_NAME


def check_private(path: Path) -> None:
    """Refuse a profile file others may read or write: it holds bearer tokens."""
    info = path.stat()
    if info.st_mode & 0o077:
        raise BadInput(f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, but it holds API tokens: kcm reads it "
                       f"only when private to you (chmod 600 {path})")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise BadInput(f"{path} belongs to another user (uid {info.st_uid}): kcm reads only your own profile file")


def load(path: Path | None = None) -> dict:
    """``{"current": name | None, "profiles": {name: {"api", "token"}}}``; empty when there is no file."""
    import yaml

    path = path or profiles_path()
    if not path.exists():
        return {"current": None, "profiles": {}}
    check_private(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid YAML: {exc}") from None
    profiles = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise BadInput(f"{path} needs a 'profiles' mapping of name -> {{api, token}}")
    return {"current": data.get("current"), "profiles": profiles}


def save(data: dict, path: Path | None = None) -> Path:
    """Write the file atomically, mode 0600 from its first byte (never readable by others, even briefly)."""
    import yaml

    path = path or profiles_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".profiles-", suffix=".yaml")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def resolve(api: str | None, token: str | None, profile: str | None, environ=os.environ) -> Target:
    """The API address and token for this command (the order is in the module docstring)."""
    if profile:
        named = _profile(profile)
        api = api or named.get("api")
        token = token or named.get("token")
    api = api or environ.get("KCM_API_URL") or None
    token = token or environ.get("KCM_TOKEN") or None
    if (api is None or token is None) and profiles_path().exists():
        data = load()
        current = data["profiles"].get(data["current"]) if data["current"] else None
        if current:
            api = api or current.get("api")
            token = token or current.get("token")
    return Target((api or DEFAULT_API).rstrip("/"), token)


def _profile(name: str) -> dict:
    path = profiles_path()
    if not path.exists():
        raise BadInput(f"profile {name!r} named, but there is no profile file ({path}); "
                       f"create it with `kcm profile set {name} --api URL --token-stdin`")
    profiles = load(path)["profiles"]
    if name not in profiles:
        raise BadInput(f"no profile {name!r} in {path} (profiles: {', '.join(sorted(profiles)) or 'none'})")
    return profiles[name]


@click.group("profile")
def profile() -> None:
    """Named API addresses and tokens (a private file in your config directory)."""


@profile.command("set")
@click.argument("name")
@click.option("--api", "api_url", metavar="URL", help="The API's base URL.")
@click.option("--token-stdin", is_flag=True, help="Read the token from stdin (keeps it out of shell history).")
@click.option("--use/--no-use", default=None, help="Make it the current profile (default: if it is the first).")
def set_profile(name: str, api_url: str | None, token_stdin: bool, use: bool | None) -> None:
    """Create or change profile NAME; only what is given changes."""
    data = load()
    entry = dict(data["profiles"].get(name) or {})
    if api_url:
        entry["api"] = api_url.rstrip("/")
    if token_stdin:
        token = click.get_text_stream("stdin").readline().strip()
        if not token:
            raise BadInput("--token-stdin: stdin held no token")
        entry["token"] = token
    data["profiles"][name] = entry
    if use or (use is None and not data["current"]):
        data["current"] = name
    path = save(data)
    click.echo(f"profile {name} saved in {path}" + (" (current)" if data["current"] == name else ""))


@profile.command("list")
def list_profiles() -> None:
    """The profiles (tokens are never shown)."""
    data = load()
    for name, entry in sorted(data["profiles"].items()):
        mark = "*" if name == data["current"] else " "
        token = "token set" if entry.get("token") else "no token"
        click.echo(f"{mark} {name}  {entry.get('api') or DEFAULT_API}  ({token})")


@profile.command("use")
@click.argument("name")
def use_profile(name: str) -> None:
    """Make NAME the current profile."""
    data = load()
    if name not in data["profiles"]:
        raise BadInput(f"no profile {name!r} (profiles: {', '.join(sorted(data['profiles'])) or 'none'})")
    data["current"] = name
    save(data)
    click.echo(f"current profile: {name}")


@profile.command("remove")
@click.argument("name")
def remove_profile(name: str) -> None:
    """Delete profile NAME."""
    data = load()
    if data["profiles"].pop(name, None) is None:
        raise BadInput(f"no profile {name!r}")
    if data["current"] == name:
        data["current"] = None
    save(data)
    click.echo(f"profile {name} removed")
