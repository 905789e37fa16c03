"""The broker configuration the product ships: every client logs in, and a box can publish only
under its own topic (config/mosquitto.acl), against a real mosquitto."""

import queue

import paho.mqtt.client as mqtt
import pytest

from envbox.servers import GATEWAY_USER, Mosquitto, eventually

USERS = {GATEWAY_USER: "gw-secret", "sj-001": "pw-1", "sj-002": "pw-2"}


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "mq", users=USERS) as b:
        yield b


def client(broker, user, password, on_message=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    result = {}
    c.on_connect = lambda cl, u, flags, rc, props: result.setdefault("rc", rc)
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    eventually(lambda: "rc" in result, 10, what=f"CONNACK for {user}")
    return c, result["rc"]


def test_wrong_password_and_anonymous_are_refused(broker):
    c, rc = client(broker, "sj-001", "wrong")
    assert rc.is_failure
    c.loop_stop()
    c2 = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)
    got = {}
    c2.on_connect = lambda cl, u, f, rc, p: got.setdefault("rc", rc)
    c2.connect("127.0.0.1", broker.port)
    c2.loop_start()
    eventually(lambda: "rc" in got, 10, what="CONNACK for anonymous")
    assert got["rc"].is_failure
    c2.loop_stop()


def test_a_box_publishes_only_under_its_own_topic(broker):
    q = queue.Queue()
    gw, rc = client(broker, GATEWAY_USER, USERS[GATEWAY_USER],
                    on_message=lambda c, u, m: q.put((m.topic, m.payload)))
    assert not rc.is_failure
    subscribed = []
    gw.on_subscribe = lambda c, u, mid, rcs, p: subscribed.append(rcs)
    gw.subscribe("envbox/v1/+/data", qos=1)
    eventually(lambda: subscribed, 10, what="SUBACK")
    assert not subscribed[0][0].is_failure

    box, rc = client(broker, "sj-001", USERS["sj-001"])
    assert not rc.is_failure
    denied = box.publish("envbox/v1/sj-002/data", b"forged", qos=1)
    denied.wait_for_publish(10)
    ok = box.publish("envbox/v1/sj-001/data", b"mine", qos=1)
    ok.wait_for_publish(10)
    # the broker delivers one publisher's messages in order: once "mine" arrived, "forged"
    # would have arrived before it
    first = q.get(timeout=10)
    assert first == ("envbox/v1/sj-001/data", b"mine")
    assert q.empty()
    for c in (gw, box):
        c.loop_stop()
        c.disconnect()


def test_a_box_cannot_read_other_boxes_data(broker):
    q = queue.Queue()
    spy, rc = client(broker, "sj-002", USERS["sj-002"],
                     on_message=lambda c, u, m: q.put(m.topic))
    subscribed = []
    spy.on_subscribe = lambda c, u, mid, rcs, p: subscribed.append(rcs)
    spy.subscribe("envbox/v1/+/data", qos=1)
    eventually(lambda: subscribed, 10, what="SUBACK")
    box, _ = client(broker, "sj-001", USERS["sj-001"])
    box.publish("envbox/v1/sj-001/data", b"x", qos=1).wait_for_publish(10)
    # sj-002 may read only its own config topic: nothing of sj-001's arrives
    own, _ = client(broker, "sj-002-own", "nope")   # refused login, only to let time pass
    own.loop_stop()
    assert q.empty()
    for c in (spy, box):
        c.loop_stop()
        c.disconnect()
