// The MQTT.js side of integration/realclients' agent protocol, shared by
// Node (agent.mjs) and the browser page (page.html): one JSON command in,
// JSON events out. A command names a client slot ("c"), so one agent holds
// several MQTT clients; its reply carries the command's "id". Messages
// arrive as events {"c", "ev": "message", ...} whenever they come, with
// the Topic Alias they carried ("alias", 0 for none).
//
// Commands:
//   {"id", "c", "cmd": "connect", "url", "client_id", "version": 4|5, "clean", "expiry", "topic_alias_max"}
//       -> {"ev": "connack", "session_present", "reason"}
//   {"id", "c", "cmd": "subscribe", "filter", "qos"} -> {"ev": "suback", "codes": [...]}
//   {"id", "c", "cmd": "publish", "topic", "payloads": [...], "qos"}
//       -> {"ev": "published", "n"} once every one is acknowledged
//   {"id", "c", "cmd": "disconnect"} -> {"ev": "disconnected"}
// A command that fails answers {"id", "c", "ev": "error", "msg"}.
//
// A plain script (no import or export), so a page loads it with <script>
// and Node imports it: it defines globalThis.makeAgent.
globalThis.makeAgent = function makeAgent(mqtt, emit) {
  const clients = {};

  function connect(cmd) {
    const opts = {
      clientId: cmd.client_id,
      protocolVersion: cmd.version,
      clean: cmd.clean,
      keepalive: 30,
      reconnectPeriod: 0, // the test decides when to reconnect
      connectTimeout: 10000,
      resubscribe: false,
    };
    if (cmd.version === 5) {
      opts.properties = {};
      if (cmd.expiry) opts.properties.sessionExpiryInterval = cmd.expiry;
      // MQTT.js resolves the server's Topic Aliases itself.
      if (cmd.topic_alias_max) opts.properties.topicAliasMaximum = cmd.topic_alias_max;
    }
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(cmd.url, opts);
      clients[cmd.c] = client;
      let connected = false;
      client.on('message', (topic, payload, packet) => {
        const alias = (packet.properties && packet.properties.topicAlias) || 0;
        emit({ c: cmd.c, ev: 'message', topic, payload: payload.toString(), qos: packet.qos, dup: !!packet.dup, retain: !!packet.retain, alias });
      });
      client.on('connect', (connack) => {
        connected = true;
        resolve({ ev: 'connack', session_present: !!connack.sessionPresent, reason: connack.reasonCode || connack.returnCode || 0 });
      });
      client.on('error', (err) => {
        if (!connected) {
          client.end(true);
          reject(err);
          return;
        }
        emit({ c: cmd.c, ev: 'error', msg: String(err && err.message || err) });
      });
      client.on('close', () => {
        if (!connected) reject(new Error('connection closed before CONNACK'));
      });
    });
  }

  function subscribe(client, cmd) {
    return new Promise((resolve, reject) => {
      client.subscribe(cmd.filter, { qos: cmd.qos }, (err, granted) => {
        if (err) {
          // A refusal is an answer (its SUBACK's codes), not a failure.
          if (err.packet && Array.isArray(err.packet.granted)) resolve({ ev: 'suback', codes: err.packet.granted });
          else reject(err);
          return;
        }
        resolve({ ev: 'suback', codes: granted.map((g) => g.qos) });
      });
    });
  }

  function publish(client, cmd) {
    // Every PUBLISH goes out at once (MQTT.js keeps their order on the
    // connection); the answer waits for every acknowledgement.
    const acks = cmd.payloads.map((p) => new Promise((resolve, reject) => {
      client.publish(cmd.topic, p, { qos: cmd.qos }, (err) => (err ? reject(err) : resolve()));
    }));
    return Promise.all(acks).then(() => ({ ev: 'published', n: cmd.payloads.length }));
  }

  function disconnect(client) {
    return new Promise((resolve) => client.end(false, {}, () => resolve({ ev: 'disconnected' })));
  }

  return async function handle(cmd) {
    let reply;
    try {
      if (cmd.cmd === 'connect') {
        reply = await connect(cmd);
      } else {
        const client = clients[cmd.c];
        if (!client) throw new Error(`no client ${cmd.c}`);
        switch (cmd.cmd) {
          case 'subscribe': reply = await subscribe(client, cmd); break;
          case 'publish': reply = await publish(client, cmd); break;
          case 'disconnect': reply = await disconnect(client); delete clients[cmd.c]; break;
          default: throw new Error(`unknown command ${cmd.cmd}`);
        }
      }
    } catch (err) {
      reply = { ev: 'error', msg: String(err && err.message || err) };
    }
    emit(Object.assign({ id: cmd.id, c: cmd.c }, reply));
  };
};
