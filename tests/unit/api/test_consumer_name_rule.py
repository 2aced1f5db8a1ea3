"""The consumer-name rule (schema/names.py) and the path converter that reads an id or a name."""
import uuid

import pytest

from api.converters import ConsumerName, ConsumerRefConverter
from schema.names import is_consumer_name


@pytest.mark.parametrize("name", ["a", "0", "orders-archive", "a" * 100, "x-1-y"])
def test_slugs_are_names(name):
    assert is_consumer_name(name)


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a.b", "a" * 101, "validate", "é",
                                  "3f2a6c1e-1111-4222-8333-444455556666", None, 7])
def test_everything_else_is_not(name):
    assert not is_consumer_name(name)


def test_the_converter_tells_an_id_from_a_name():
    converter = ConsumerRefConverter(map=None)
    value = "3F2A6C1E-1111-4222-8333-444455556666"
    assert converter.to_python(value) == uuid.UUID(value)
    name = converter.to_python("orders-archive")
    assert isinstance(name, ConsumerName) and name == "orders-archive"
