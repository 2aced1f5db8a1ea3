"""schema.secrets: the one reference grammar, its confinement (prefix, directory) and its resolution."""
from __future__ import annotations

import os

import pytest

from schema import secrets
from schema.secrets import Redactor, SecretError, SecretPolicy


@pytest.fixture
def policy(tmp_path) -> SecretPolicy:
    (tmp_path / "secrets").mkdir()
    return SecretPolicy(env_prefix="KCM_SECRET_", secrets_dir=str(tmp_path / "secrets"))


@pytest.mark.parametrize("value", ["${env:KCM_SECRET_KAFKA}", "${env:KCM_SECRET_a_1}"])
def test_env_references_under_the_prefix_are_allowed(value, policy):
    assert secrets.check(value, policy) is None


@pytest.mark.parametrize("value", ["${env:HOME}", "${env:KCM_DATABASE_URL}", "${env:KCM_BOOTSTRAP_ADMIN_TOKEN}",
                                   "${env:KCM_SECRET_}", "${env:kcm_secret_x}"])
def test_env_references_outside_the_prefix_name_the_prefix(value, policy):
    message = secrets.check(value, policy)
    assert message is not None and "KCM_SECRET_" in message and "KCM_SECRET_ENV_PREFIX" in message


def test_file_references_are_confined_to_the_secrets_directory(policy, tmp_path):
    root = policy.secrets_dir
    (tmp_path / "outside").write_text("x")
    os.symlink(tmp_path / "outside", os.path.join(root, "link"))
    assert secrets.check(f"${{file:{root}/pg-dsn}}", policy) is None
    for value in ["${file:/etc/passwd}", f"${{file:{root}/../outside}}", f"${{file:{root}/link}}",
                  f"${{file:{root}}}", "${file:relative/path}"]:
        message = secrets.check(value, policy)
        assert message is not None, value
    assert root in secrets.check("${file:/etc/passwd}", policy)


@pytest.mark.parametrize("value", ["hunter2", "${env:KCM_SECRET_X} trailing", "${env:KCM_SECRET_X}\n",
                                   "${env:1BAD}", "${vault:KCM_SECRET_X}", "${env:${env:KCM_SECRET_X}}", 42, None])
def test_anything_else_is_not_a_reference(value, policy):
    assert secrets.check(value, policy) is not None


def test_resolve_reads_env_and_file_and_rechecks_the_policy(policy, tmp_path):
    root = policy.secrets_dir
    with open(os.path.join(root, "pw"), "w") as fh:
        fh.write("from-file\n")
    assert secrets.resolve("${env:KCM_SECRET_PW}", policy, {"KCM_SECRET_PW": "s3cret"}) == "s3cret"
    assert secrets.resolve(f"${{file:{root}/pw}}", policy, {}) == "from-file"
    with pytest.raises(SecretError, match="not set"):
        secrets.resolve("${env:KCM_SECRET_PW}", policy, {})
    # a stored row that was never validated (or planted by hand) is refused at resolve time too
    with pytest.raises(SecretError, match="KCM_SECRETS_DIR") as refused:
        secrets.resolve("${file:/etc/passwd}", policy, {})
    assert "/bin/" not in str(refused.value)
    with pytest.raises(SecretError, match="KCM_SECRET_ENV_PREFIX"):
        secrets.resolve("${env:HOME}", policy, {"HOME": "/root"})


def test_a_symlink_swapped_in_after_validation_is_refused_at_resolve(policy, tmp_path):
    target = os.path.join(policy.secrets_dir, "dsn")
    with open(target, "w") as fh:
        fh.write("dbname=x")
    reference = f"${{file:{target}}}"
    assert secrets.check(reference, policy) is None
    os.remove(target)
    os.symlink("/etc/passwd", target)
    with pytest.raises(SecretError, match="KCM_SECRETS_DIR") as refused:
        secrets.resolve(reference, policy, {})
    assert "/bin/" not in str(refused.value)  # no line of /etc/passwd


def test_a_missing_file_names_the_reference_not_a_value(policy):
    reference = f"${{file:{policy.secrets_dir}/absent}}"
    with pytest.raises(SecretError, match="No such file") as missing:
        secrets.resolve(reference, policy, {})
    assert reference in str(missing.value)


def test_redactor_replaces_a_value_by_its_reference_and_a_dsns_parts_by_stars():
    redact = Redactor([("${env:KCM_SECRET_DSN}", "postgresql://alice:pw-9x@db.internal:5432/orders"),
                       ("${env:KCM_SECRET_KV}", "host=pg.internal user=bob password=k1 dbname=sales")])
    text = redact('connection to "db.internal" failed for user "alice" (pw-9x); database "orders"; pg.internal k1')
    for leaked in ("db.internal", "alice", "pw-9x", "orders", "pg.internal", "k1"):
        assert leaked not in text
    assert redact("postgresql://alice:pw-9x@db.internal:5432/orders") == "${env:KCM_SECRET_DSN}"


def test_the_prefix_may_not_expose_kcms_own_settings():
    from schema.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="KCM_SECRET_ENV_PREFIX"):
        Settings.from_env({"KCM_SECRET_ENV_PREFIX": "KCM_"})
    assert Settings.from_env({"KCM_SECRET_ENV_PREFIX": "APP_SECRET_"}).secret_env_prefix == "APP_SECRET_"
    assert Settings.from_env({}).secrets_dir == "/run/secrets"
