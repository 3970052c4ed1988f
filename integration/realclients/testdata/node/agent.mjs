// MQTT.js in Node: the agent of agent-core.js on standard input (one JSON
// command a line) and standard output (one JSON event a line). It ends when
// its input ends.
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import './agent-core.js';

const handle = globalThis.makeAgent(mqtt, (ev) => process.stdout.write(JSON.stringify(ev) + '\n'));
const pending = [];
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() !== '') pending.push(handle(JSON.parse(line)));
});
lines.on('close', async () => {
  await Promise.allSettled(pending);
  process.exit(0);
});
