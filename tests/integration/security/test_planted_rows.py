"""A row written before these rules, or by hand, gets no further at the worker than the API would let it:
the replica is FATAL at once with a message naming the rule, and nothing the reference points at is shown."""
from __future__ import annotations

import shutil

from schema.models import Consumer, DownstreamProcessor
from schema.states import DesiredState

PASSWD_LINES = [line for line in open("/etc/passwd").read().splitlines() if line.strip()]


def plant(runtime, topic: str, *, processors=(), security=None, bootstrap=None) -> str:
    with runtime.sessions() as session, session.begin():
        consumer = Consumer(bootstrap_servers=[bootstrap or runtime.bootstrap], topic=topic,
                            consumer_group=f"kcm-sec-{topic}", replicas=1, security=security,
                            desired_state=DesiredState.RUNNING, generation=1)
        for position, (processor_type, config) in enumerate(processors):
            consumer.downstream_processors.append(DownstreamProcessor(
                processor_type=processor_type, position=position, config=config))
        session.add(consumer)
    cid = str(consumer.id)
    runtime.command(cid, "create")
    return cid


def fatal(runtime, cid: str) -> str:
    state = runtime.wait_state(cid, "FATAL", timeout=40)
    assert state["retries"] == "0", state  # a configuration error: no restart
    return state["last_error"]


def everything_shown(runtime, cid: str) -> str:
    return str(runtime.state(cid)) + str(runtime.heartbeat(cid)) + runtime.supervisor_log()


def test_a_planted_dsn_reference_to_etc_passwd_is_fatal_and_shows_no_line_of_it(runtime, topic_factory):
    cid = plant(runtime, topic_factory(), processors=[("database_sync", {"dsn": "${file:/etc/passwd}"})])
    runtime.start_supervisor()
    last_error = fatal(runtime, cid)
    assert "${file:/etc/passwd}" in last_error and "KCM_SECRETS_DIR" in last_error
    shown = everything_shown(runtime, cid)
    assert not [line for line in PASSWD_LINES if line in shown]


def test_a_dsn_file_inside_the_secrets_directory_that_is_no_dsn_names_the_reference_only(
        runtime, topic_factory, tmp_path):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    shutil.copy("/etc/passwd", secrets_dir / "pg-dsn")  # what libpq would quote back line by line
    reference = f"${{file:{secrets_dir}/pg-dsn}}"
    cid = plant(runtime, topic_factory(), processors=[("database_sync", {"dsn": reference})])
    runtime.start_supervisor(KCM_SECRETS_DIR=str(secrets_dir))
    last_error = fatal(runtime, cid)
    assert f"SecretReferenceInvalid: {reference} is not a valid DSN" in last_error
    shown = everything_shown(runtime, cid)
    assert not [line for line in PASSWD_LINES if line in shown]


def test_a_planted_kinit_cmd_is_fatal_and_never_runs(runtime, topic_factory, tmp_path):
    marker = tmp_path / "kinit-ran"
    cid, _out = runtime.create_consumer(topic_factory(), security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI",
        "sasl.kerberos.kinit.cmd": f"touch {marker}"})
    runtime.start_supervisor()
    last_error = fatal(runtime, cid)
    assert "ConsumerConfigError" in last_error and "sasl.kerberos.kinit.cmd" in last_error
    assert "touch" not in last_error and not marker.exists()


def test_a_planted_env_reference_outside_the_prefix_is_fatal(runtime, topic_factory):
    cid, _out = runtime.create_consumer(topic_factory(), security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "u",
        "sasl.password": "${env:KCM_DATABASE_URL}"})
    runtime.start_supervisor()
    last_error = fatal(runtime, cid)
    assert "KCM_SECRET_ENV_PREFIX" in last_error
    assert runtime.env["KCM_DATABASE_URL"] not in everything_shown(runtime, cid)


def test_a_planted_metadata_broker_is_fatal(runtime, topic_factory):
    cid, _out = runtime.create_consumer(topic_factory(), bootstrap="169.254.169.254:9092")
    runtime.start_supervisor()
    assert "BrokerNotAllowed: bootstrap_servers entry 0" in fatal(runtime, cid)


def test_a_forwarder_reference_resolving_outside_the_allowlist_is_fatal_without_showing_it(runtime, topic_factory):
    cid = plant(runtime, topic_factory(), processors=[("kafka_forward", {
        "topic": "elsewhere", "bootstrap_servers": "${env:KCM_SECRET_SEC_TARGET}"})])
    runtime.start_supervisor(KCM_ALLOWED_BROKERS="127.0.0.1", KCM_SECRET_SEC_TARGET="evil-7f3e.example:9092")
    last_error = fatal(runtime, cid)
    assert "BrokerNotAllowed: kafka_forward bootstrap_servers entry 0 (from ${env:KCM_SECRET_SEC_TARGET})" in last_error
    assert "evil-7f3e" not in everything_shown(runtime, cid)
