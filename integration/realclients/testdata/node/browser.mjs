// MQTT.js in headless Chromium: the agent of agent-core.js runs in a page
// (page.html, with MQTT.js's browser bundle) that this driver serves on a
// loopback HTTP port; commands come on standard input and events go to
// standard output, one JSON object a line, as for agent.mjs. When its input
// ends it saves a screenshot of the page to the path given as its argument.
// CHROMIUM names the browser (default /usr/bin/chromium, Debian's).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const files = {
  '/': ['page.html', 'text/html'],
  '/agent-core.js': ['agent-core.js', 'text/javascript'],
  '/mqtt.min.js': [join(dirname(require.resolve('mqtt/package.json')), 'dist', 'mqtt.min.js'), 'text/javascript'],
};
const screenshot = process.argv[2];
const out = (ev) => process.stdout.write(JSON.stringify(ev) + '\n');

const server = createServer(async (req, res) => {
  const f = files[req.url];
  if (!f) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': f[1] }).end(await readFile(resolve(here, f[0])));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Root needs --no-sandbox; the rest keep Chromium off the network, which
  // this machine does not reach.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
page.on('pageerror', (err) => out({ ev: 'error', msg: 'page: ' + err.message }));
await page.exposeFunction('emitEvent', out);
await page.goto(`http://127.0.0.1:${server.address().port}/`);
out({ ev: 'ready', user_agent: await page.evaluate(() => navigator.userAgent) });

const pending = [];
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  const cmd = JSON.parse(line);
  pending.push(page.evaluate((c) => window.handle(c), cmd).catch((err) => out({ id: cmd.id, c: cmd.c, ev: 'error', msg: err.message })));
});
lines.on('close', async () => {
  await Promise.allSettled(pending);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await browser.close();
  server.close();
  process.exit(0);
});
