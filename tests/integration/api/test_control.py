"""start / stop / restart: desired state and generation rules, both path forms, 404."""
from __future__ import annotations

import uuid

import pytest


def control(client, consumer_id, action, suffix="/"):
    response = client.post(f"/consumers/{consumer_id}/{action}{suffix}")
    assert response.status_code == 200, response.json
    assert set(response.json) >= {"message", "desired_state", "generation"}
    return response.json


@pytest.mark.parametrize("suffix", ["/", ""])
def test_start_from_stopped_sets_running_and_a_new_generation(client, create_consumer, suffix):
    consumer = create_consumer()
    result = control(client, consumer["id"], "start", suffix)
    assert result["desired_state"] == "running" and result["generation"] == 2
    assert client.get(f"/consumers/{consumer['id']}/").json["desired_state"] == "running"


def test_starting_a_started_consumer_is_200_without_a_new_generation(client, create_consumer):
    consumer = create_consumer()
    first = control(client, consumer["id"], "start")
    again = control(client, consumer["id"], "start")
    assert again["generation"] == first["generation"] and again["desired_state"] == "running"
    assert "already" in again["message"]


@pytest.mark.parametrize("suffix", ["/", ""])
def test_stop_from_running_bumps_and_stopping_a_stopped_consumer_does_not(client, create_consumer, suffix):
    consumer = create_consumer()
    assert control(client, consumer["id"], "stop", suffix)["generation"] == 1  # already stopped
    control(client, consumer["id"], "start")
    stopped = control(client, consumer["id"], "stop", suffix)
    assert stopped["desired_state"] == "stopped" and stopped["generation"] == 3


@pytest.mark.parametrize("suffix", ["/", ""])
def test_restart_always_makes_a_new_generation_and_runs(client, create_consumer, suffix):
    consumer = create_consumer()
    first = control(client, consumer["id"], "restart", suffix)
    second = control(client, consumer["id"], "restart", suffix)
    assert first["desired_state"] == second["desired_state"] == "running"
    assert (first["generation"], second["generation"]) == (2, 3)


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
@pytest.mark.parametrize("suffix", ["/", ""])
def test_control_of_a_missing_consumer_is_404(client, action, suffix):
    response = client.post(f"/consumers/{uuid.uuid4()}/{action}{suffix}")
    assert response.status_code == 404 and response.json["code"] == 404
