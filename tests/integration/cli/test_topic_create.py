"""`kcm topic create` makes the topic through the AdminClient and can be re-run; bad input is exit 2, no Kafka 3."""
import socket


def _partitions(admin, name):
    return len(admin.list_topics(timeout=10).topics[name].partitions)


def test_topic_create_makes_the_topic_and_a_rerun_says_it_exists(kcm, kafka_admin, new_topic_name):
    first = kcm("topic", "create", new_topic_name, "--partitions", "4")
    assert first.returncode == 0, first.err
    assert first.out.strip() == f"created topic {new_topic_name} (4 partitions, replication factor 1)"
    assert _partitions(kafka_admin, new_topic_name) == 4

    again = kcm("topic", "create", new_topic_name, "--partitions", "4")
    assert again.returncode == 0, again.err
    assert again.out.strip() == f"topic {new_topic_name} already exists (4 partitions)"


def test_topic_create_with_another_partition_count_than_the_existing_topic_exits_1(kcm, kafka_admin,
                                                                                   new_topic_name):
    assert kcm("topic", "create", new_topic_name, "--partitions", "2").returncode == 0
    other = kcm("topic", "create", new_topic_name, "--partitions", "3")
    assert other.returncode == 1
    assert other.err.strip() == f"Error: topic {new_topic_name} already exists with 2 partitions, not 3"
    assert _partitions(kafka_admin, new_topic_name) == 2


def test_bad_topic_name_or_option_is_a_usage_error_before_any_connection(kcm, kafka_admin):
    unreachable = ["--bootstrap", "127.0.0.1:1"]  # a usage error must not wait for a broker
    bad_name = kcm("topic", "create", "no spaces/allowed", "--partitions", "1", *unreachable)
    assert bad_name.returncode == 2
    assert "Invalid Kafka topic name" in bad_name.err
    assert "no spaces/allowed" not in kafka_admin.list_topics(timeout=10).topics
    for args in (["--partitions", "0"], ["--partitions", "many"], []):
        done = kcm("topic", "create", "kcm-cli-never-created", *args, *unreachable)
        assert done.returncode == 2, (args, done.err)
        assert "--partitions" in done.err
    bad_bootstrap = kcm("topic", "create", "kcm-cli-never-created", "--partitions", "1", "--bootstrap", "nohost")
    assert bad_bootstrap.returncode == 2 and "host:port" in bad_bootstrap.err


def test_unreachable_kafka_exits_3_with_one_line_naming_the_address(kcm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    done = kcm("topic", "create", "kcm-cli-never-created", "--partitions", "1", "--timeout", "2",
               env={"KCM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})
    assert done.returncode == 3
    assert done.err.startswith(f"Error: cannot reach Kafka at 127.0.0.1:{port} within 2 s")
    assert len(done.err.strip().splitlines()) == 1, done.err
