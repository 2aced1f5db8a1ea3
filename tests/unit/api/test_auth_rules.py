"""The pure rules of api/auth: roles, scope patterns (in Python and as SQL patterns), tokens, bearer parsing."""
from __future__ import annotations

import hashlib

import pytest

from api.auth import scopes, tokens
from api.auth.authenticate import AuthenticationFailed, Authenticator
from api.auth.principal import API_KEY, Principal
from api.auth.roles import Role


def test_each_role_includes_the_ones_before():
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    admin = Principal(API_KEY, "1", "a", Role.ADMIN)
    assert all(admin.can(role) for role in Role)
    assert not Principal(API_KEY, "2", "v", Role.VIEWER).can(Role.OPERATOR)
    assert not Principal(API_KEY, "3", "n", None).can(Role.VIEWER)
    assert Role.highest(["viewer", "ADMIN", "root"]) == Role.ADMIN and Role.highest("operator") == Role.OPERATOR
    assert Role.highest(["root"]) is None and Role.highest(None) is None and Role.highest(42) is None


@pytest.mark.parametrize("pattern,group,expected", [
    ("billing-*", "billing-eu", True), ("billing-*", "billing-", True), ("billing-*", "Billing-eu", False),
    ("billing-*", "xbilling-eu", False), ("billing_?", "billing_x", True), ("billing_?", "billingXx", False),
    ("a.b", "a.b", True), ("a.b", "axb", False), ("*", "anything at all", True), ("100%", "100%", True),
    ("100%", "1000", False), ("a\\b", "a\\b", True),
])
def test_scope_patterns_know_only_star_and_question_mark(pattern, group, expected):
    assert scopes.matches((pattern,), group) is expected


def test_no_scopes_means_every_group_and_an_empty_tuple_none():
    assert scopes.matches(None, "x") and not scopes.matches((), "x")
    assert scopes.covers(None, None) and scopes.covers(("a-*", "b"), ("b",))
    assert not scopes.covers(("a-*",), None) and not scopes.covers(("a-*",), ("a-b*",))


@pytest.mark.parametrize("bad", [[], "billing-*", [""], ["a[b]"], ["x" * 256], [1], ["tab\there"]])
def test_unusable_patterns_are_refused(bad):
    with pytest.raises(scopes.InvalidScope):
        scopes.check_patterns(bad)


def test_sql_patterns_escape_like_wildcards_and_keep_glob_for_sqlite():
    assert scopes.sql_pattern("bill_ing%*?", "postgresql") == "bill\\_ing\\%%_"
    assert scopes.sql_pattern("a\\b*", "postgresql") == "a\\\\b%"
    assert scopes.sql_pattern("bill_ing*", "sqlite") == "bill_ing*"


def test_tokens_are_long_random_and_stored_as_sha256():
    first, second = tokens.new_token(), tokens.new_token()
    assert first != second and first.startswith("kcm_") and len(first) >= 47
    assert tokens.digest(first) == hashlib.sha256(first.encode()).hexdigest()
    assert tokens.same_digest(tokens.digest(first), tokens.digest(first))
    assert not tokens.same_digest(tokens.digest(first), tokens.digest(second))


class NoKeys:
    def principal_for(self, digest):
        return None


@pytest.mark.parametrize("header", ["Basic abc", "Bearer ", "Bearer a b", "bearer kcm_unknown", "Bearer \x00"])
def test_malformed_or_unknown_bearer_tokens_fail(header):
    with pytest.raises(AuthenticationFailed) as failure:
        Authenticator(NoKeys(), "").authenticate(header)
    assert "kcm_unknown" not in str(failure.value)


def test_no_header_is_no_principal_and_the_bootstrap_token_is_the_admin():
    token = "kcm_" + "b" * 40
    authenticator = Authenticator(NoKeys(), token)
    assert authenticator.authenticate(None) is None
    assert authenticator.authenticate(f"Bearer {token}").role == Role.ADMIN
