"""Eclipse paho-mqtt (Python, 1.x API) as an agent of integration/realclients.

One JSON command a line on standard input, one JSON event a line on standard
output (the protocol of ../node/agent-core.js): a command names a client
slot "c", its answer carries the command's "id", and messages arrive as
{"c", "ev": "message", ...} events whenever they come.

  connect    {"host", "port", "client_id", "version": 4|5, "clean", "expiry"}
             -> {"ev": "connack", "session_present", "reason"}
  subscribe  {"filter", "qos"}            -> {"ev": "suback", "codes": [...]}
  publish    {"topic", "payloads", "qos"} -> {"ev": "published", "n"} once all are acknowledged
  disconnect {}                           -> {"ev": "disconnected"}

A command that fails answers {"ev": "error", "msg"}. Runs under Debian's
python3 with python3-paho-mqtt; the agent ends when its input ends.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10.0

out_lock = threading.Lock()


def emit(ev):
    with out_lock:
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()


class Slot:
    """One MQTT client and the answers its callbacks hand to the command loop."""

    def __init__(self, name, cmd):
        self.name = name
        self.v5 = cmd["version"] == 5
        self.connack = None
        self.subacks = {}
        self.cond = threading.Condition()
        if self.v5:
            self.client = mqtt.Client(client_id=cmd["client_id"], protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        else:
            self.client = mqtt.Client(client_id=cmd["client_id"], clean_session=cmd["clean"],
                                      protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message

    def on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            self.connack = {"ev": "connack", "session_present": bool(flags.get("session present")), "reason": int(rc if not hasattr(rc, "value") else rc.value)}
            self.cond.notify_all()

    def on_subscribe(self, client, userdata, mid, granted, properties=None):
        codes = [g.value if hasattr(g, "value") else int(g) for g in granted]
        with self.cond:
            self.subacks[mid] = codes
            self.cond.notify_all()

    def on_message(self, client, userdata, msg):
        emit({"c": self.name, "ev": "message", "topic": msg.topic, "payload": msg.payload.decode(),
              "qos": msg.qos, "dup": bool(msg.dup), "retain": bool(msg.retain)})

    def wait(self, what, ready):
        with self.cond:
            if not self.cond.wait_for(ready, TIMEOUT):
                raise RuntimeError("no %s within %.0f s" % (what, TIMEOUT))

    def connect(self, cmd):
        if self.v5:
            props = None
            if cmd.get("expiry"):
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = cmd["expiry"]
            self.client.connect(cmd["host"], cmd["port"], keepalive=30, clean_start=cmd["clean"], properties=props)
        else:
            self.client.connect(cmd["host"], cmd["port"], keepalive=30)
        self.client.loop_start()
        self.wait("CONNACK", lambda: self.connack is not None)
        return self.connack

    def subscribe(self, cmd):
        rc, mid = self.client.subscribe(cmd["filter"], qos=cmd["qos"])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("subscribe: %s" % mqtt.error_string(rc))
        self.wait("SUBACK", lambda: mid in self.subacks)
        return {"ev": "suback", "codes": self.subacks.pop(mid)}

    def publish(self, cmd):
        infos = [self.client.publish(cmd["topic"], p, qos=cmd["qos"]) for p in cmd["payloads"]]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
            if not info.is_published():
                raise RuntimeError("message %d not acknowledged within %.0f s" % (info.mid, TIMEOUT))
        return {"ev": "published", "n": len(infos)}

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()
        return {"ev": "disconnected"}


def main():
    slots = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        name = cmd.get("c")
        try:
            if cmd["cmd"] == "connect":
                slots[name] = Slot(name, cmd)
                reply = slots[name].connect(cmd)
            elif name not in slots:
                raise RuntimeError("no client %s" % name)
            elif cmd["cmd"] == "subscribe":
                reply = slots[name].subscribe(cmd)
            elif cmd["cmd"] == "publish":
                reply = slots[name].publish(cmd)
            elif cmd["cmd"] == "disconnect":
                reply = slots.pop(name).disconnect()
            else:
                raise RuntimeError("unknown command %s" % cmd["cmd"])
        except Exception as e:  # the answer says what failed; the test decides
            reply = {"ev": "error", "msg": "%s: %s" % (type(e).__name__, e)}
        reply.update({"id": cmd.get("id"), "c": name})
        emit(reply)
    for slot in slots.values():
        slot.disconnect()


if __name__ == "__main__":
    main()
