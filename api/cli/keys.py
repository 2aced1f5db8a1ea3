"""``kcm keys create|list|revoke``: API keys (unscoped admins only). The token is printed once, at creation."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options, path
from api.cli.errors import BadInput

COLUMNS = ("name", "id", "role", "scopes", "created_by", "created_at", "revoked_at")
ROLES = ("viewer", "operator", "admin")


@click.group("keys")
def keys() -> None:
    """API keys."""


@keys.command("create")
@api_options
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer < operator < admin.")
@click.option("--scope", "scopes", multiple=True, metavar="PATTERN",
              help="Limit the key to consumer groups matching this glob (repeat; default every group).")
def create(api: Api, fmt: str, name: str, role: str, scopes: tuple[str, ...]) -> None:
    """Create key NAME; its token is shown in this output only."""
    body = api.post("/api-keys/", {"name": name, "role": role, "scopes": list(scopes) or None})

    def text(k: dict) -> str:
        return (f"created API key {k['name']} (id {k['id']}, role {k['role']})\n"
                f"token: {k['token']}\n"
                "kcm keeps only its digest: store the token now, it cannot be shown again")

    output.emit(body, fmt, text=text)


@keys.command("list")
@api_options
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
def list_keys(api: Api, fmt: str, active: bool) -> None:
    """Every API key (never a token)."""
    listed = api.get("/api-keys/")
    if active:
        listed = [k for k in listed if not k.get("revoked_at")]
    output.emit(listed, fmt, columns=COLUMNS)


@keys.command("revoke")
@api_options
@click.argument("key")
def revoke(api: Api, fmt: str, key: str) -> None:
    """Revoke KEY (its id, or the name of one active key): refused from the next request on."""
    key_id = key
    listed = None
    if not _is_uuid(key):
        listed = [k for k in api.get("/api-keys/") if k["name"] == key and not k.get("revoked_at")]
        if len(listed) != 1:
            raise BadInput(f"{len(listed)} active keys are named {key!r}: revoke by id (`kcm keys list`)")
        key_id = listed[0]["id"]
    api.delete(path("api-keys", key_id))
    output.emit({"revoked": key_id}, fmt, text=lambda _: f"revoked API key {key} ({key_id})")


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
