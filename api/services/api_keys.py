"""API keys: create (the token is returned once), list, revoke, and the per-request lookup.

The lookup reads the database on every request (``principal_for``: one indexed statement, ``fetch_row``), so a
revoke takes effect at once in every API process; there is no cache that could outlive it (the cost is in
BENCHMARKS.md, API latency with authentication on and off).
"""
from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.auth import scopes as scope_rules
from api.auth import tokens
from api.auth.errors import Forbidden
from api.auth.principal import API_KEY, Actor, Principal
from api.auth.roles import Role
from api.services import audit
from api.services.errors import NotFound
from api.services.page_cache import fetch_row, placeholder
from schema.models import ApiKey, utcnow


def key_snapshot(key: ApiKey) -> dict:
    """What the audit trail keeps of a key: never its token or digest."""
    return {"name": key.name, "role": key.role, "scopes": key.scopes}


class ApiKeyService:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        table = ApiKey.__tablename__
        self._lookup_sql = (f"SELECT id, name, role, scopes FROM {table} "
                            f"WHERE token_digest = {placeholder(self.engine)} AND revoked_at IS NULL")

    def create(self, name: str, role: Role, scopes: tuple[str, ...] | None, actor: Actor) -> tuple[ApiKey, str]:
        """A new key and its token (shown once). A scoped principal hands out only patterns it holds itself."""
        if not scope_rules.covers(actor.principal.scopes, scopes):
            raise Forbidden("a key limited to consumer groups can only create keys limited to its own patterns")
        token = tokens.new_token()
        key = ApiKey(id=uuid.uuid4(), name=name, role=Role(role).label, token_digest=tokens.digest(token),
                     scopes=None if scopes is None else list(scopes), created_by=actor.principal.name,
                     created_at=utcnow())
        try:
            with self.sessions() as session, session.begin():
                session.add(key)
                audit.record(session, actor, audit.Action.API_KEY_CREATE, target_type="api_key", target_id=key.id,
                             after=key_snapshot(key))
        except DBAPIError as exc:
            exc.hide_parameters = True  # the statement's parameters hold the digest: keep it out of any log
            raise
        return key, token

    def list(self) -> list[ApiKey]:
        with self.sessions() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))

    def revoke(self, key_id: uuid.UUID, actor: Actor) -> None:
        """Revoked at once: the next request with its token finds no key. The row stays for the audit trail."""
        with self.sessions() as session, session.begin():
            key = session.get(ApiKey, key_id, with_for_update=True)
            if key is None or key.revoked_at is not None:
                raise NotFound(f"API key {key_id} not found")
            key.revoked_at = utcnow()
            audit.record(session, actor, audit.Action.API_KEY_REVOKE, target_type="api_key", target_id=key.id,
                         before=key_snapshot(key))

    def principal_for(self, token_digest: str) -> Principal | None:
        """The principal of an active key with this digest, or None."""
        row = fetch_row(self.engine, self._lookup_sql, (token_digest,))
        if row is None:
            return None
        key_id, name, role, raw_scopes = row
        if isinstance(raw_scopes, str):  # SQLite hands JSON back as text
            raw_scopes = json.loads(raw_scopes)
        key_scopes = None if raw_scopes is None else tuple(raw_scopes)
        return Principal(API_KEY, str(uuid.UUID(str(key_id))), name, Role.parse(role), key_scopes)
