"""API keys: create (the token is returned once), list, revoke, and the per-request check.

``principal_for`` keeps ``digest -> principal`` per process, stamped with the kcm_changes version it was looked
up under. Every write to api_keys moves that version in its own commit (migration 0006), and every request reads
it once (``read_change_version``, which the list's page cache then reuses): an entry stamped with the version
just read is still the key's state; any other is looked up again (one indexed statement, ``fetch_row``). So a
revoke, or a role or scope changed by hand in SQL, is refused on the very next request in every API process,
and a list request with a known key costs no round trip of its own. No version row (deleted by hand): every
request looks its key up, as before the cache. Keys do not expire; an expiry would be checked on a cache hit too.
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
from api.services.page_cache import fetch_row, placeholder, read_change_version
from schema.models import ApiKey, utcnow


def key_snapshot(key: ApiKey) -> dict:
    """What the audit trail keeps of a key: never its token or digest."""
    return {"name": key.name, "role": key.role, "scopes": key.scopes}


# far more keys than a deployment holds; beyond it the cache starts again rather than grow
MAX_CACHED_KEYS = 4096


class ApiKeyService:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        self._validated: dict[str, tuple[Principal, int]] = {}  # digest -> (principal, version looked up under)
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
        """The principal of an active key with this digest, or None: from the cache when no key changed since it
        was looked up, else from the database (read after the version, so never older than its stamp)."""
        version = self._read(read_change_version)
        cached = self._validated.get(token_digest)
        if cached is not None and cached[1] == version:
            return cached[0]
        principal = self._lookup(token_digest)
        if principal is None or version is None:
            self._validated.pop(token_digest, None)
        else:
            if len(self._validated) >= MAX_CACHED_KEYS:
                self._validated.clear()
            self._validated[token_digest] = (principal, version)
        return principal

    def _read(self, read, *args):
        try:
            return read(self.engine, *args)
        except DBAPIError as exc:
            # a pooled connection the server dropped (see ConsumerService.list_rendered): a read runs again
            if not exc.connection_invalidated:
                raise
            return read(self.engine, *args)

    def _lookup(self, token_digest: str) -> Principal | None:
        row = self._read(fetch_row, self._lookup_sql, (token_digest,))
        if row is None:
            return None
        key_id, name, role, raw_scopes = row
        if isinstance(raw_scopes, str):  # SQLite hands JSON back as text
            raw_scopes = json.loads(raw_scopes)
        key_scopes = None if raw_scopes is None else tuple(raw_scopes)
        return Principal(API_KEY, str(uuid.UUID(str(key_id))), name, Role.parse(role), key_scopes)
