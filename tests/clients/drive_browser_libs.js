// Runs a published browser tracking library in headless Chromium against a tracking host.
//
// Usage: node drive_browser_libs.js segment-browser|rudder-browser BASE_URL WRITE_KEY USER_ID
// Serves page.html and the library's own build from a second loopback origin, so every request to
// BASE_URL is cross-origin and CORS is enforced by the browser. Exits 0 only when the library
// reported no failure, no request to BASE_URL failed (network or CORS) or answered >= 400, and each
// call type reached BASE_URL. For rudder-browser a second page uses the sendBeacon transport
// (useBeacon: true) and is navigated away; its beacon must reach BASE_URL too.
// CHROMIUM (env) overrides the browser binary, default /usr/bin/chromium-headless-shell.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [lib, base, writeKey, userId] = process.argv.slice(2);
if (!['segment-browser', 'rudder-browser'].includes(lib) || !base || !writeKey || !userId) {
  console.error('usage: drive_browser_libs.js segment-browser|rudder-browser BASE_URL WRITE_KEY USER_ID');
  process.exit(2);
}
const baseOrigin = new URL(base).origin;
const roots = {
  '/lib/segment/': path.join(__dirname, 'node_modules/@segment/analytics-next/dist/umd'),
  '/lib/rudder/': path.join(__dirname, 'node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd'),
};

function serve() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://page');
    let file = null;
    if (url.pathname === '/page.html') file = path.join(__dirname, 'page.html');
    for (const [prefix, dir] of Object.entries(roots)) {
      if (url.pathname.startsWith(prefix)) {
        const rel = path.normalize(url.pathname.slice(prefix.length));
        if (!rel.startsWith('..')) file = path.join(dir, rel);
      }
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      console.log(`page server: 404 ${url.pathname}`);
      res.writeHead(404).end();
      return;
    }
    const type = file.endsWith('.html') ? 'text/html' : 'application/javascript';
    res.writeHead(200, { 'Content-Type': type }).end(fs.readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const server = await serve();
  const pageOrigin = `http://127.0.0.1:${server.address().port}`;
  if (pageOrigin === baseOrigin) throw new Error('page and host must be different origins');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium-headless-shell' });
  const failures = [];
  const seen = []; // requests to BASE_URL: "METHOD path status"
  const context = await browser.newContext();
  context.on('requestfailed', (r) => {
    if (r.url().startsWith(baseOrigin)) failures.push(`request failed: ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`);
  });
  context.on('requestfinished', async (r) => {
    if (!r.url().startsWith(baseOrigin)) return;
    const resp = await r.response().catch(() => null);
    const status = resp ? resp.status() : 0;
    const u = new URL(r.url());
    const line = `${r.method()} ${u.pathname}${u.search} -> ${status}`;
    seen.push({ line, path: u.pathname, body: r.postData() || '' });
    if (status >= 400 || status === 0) failures.push(`host answered: ${line}`);
  });

  async function run(beacon) {
    const page = await context.newPage();
    page.on('console', (m) => {
      const text = m.text();
      console.log(`console.${m.type()}: ${text}`);
      // Both libraries log delivery and config failures through console.error / console.warn.
      if (m.type() === 'error' || (m.type() === 'warning' && /fail|error|unable|invalid/i.test(text))) failures.push(`console: ${text}`);
    });
    page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
    const q = new URLSearchParams({ lib, base, writeKey, userId, beacon: beacon ? '1' : '0' });
    await page.goto(`${pageOrigin}/page.html?${q}`);
    try {
      await page.waitForFunction(() => window.__report && window.__report.done, null, { timeout: 10000 });
    } catch (e) {
      failures.push('the library did not finish its calls within 10 s (see the console lines above)');
    }
    const report = await page.evaluate(() => window.__report);
    for (const c of report.calls) console.log(`${lib}${beacon ? ' (beacon)' : ''}: ${c}`);
    for (const f of report.failures) failures.push(`library: ${f}`);
    if (beacon) {
      // One more event, then leave the page at once: pagehide makes the beacon queue flush with
      // navigator.sendBeacon while the document goes away (the browser gives no response to
      // anyone for that one; the host must still accept it).
      await page.evaluate(() => window.__trackBeforeUnload());
      await page.goto('about:blank');
    }
    await page.waitForTimeout(beacon ? 1000 : 500);
    await page.close({ runBeforeUnload: true });
  }

  await run(false);
  const expected = lib === 'segment-browser'
    ? ['/v1/i', '/v1/t', '/v1/p', '/v1/s', '/v1/g', '/v1/a']
    : ['/v1/identify', '/v1/track', '/v1/page', '/v1/group', '/v1/alias'];
  if (lib === 'rudder-browser') {
    await run(true);
    expected.push('/beacon/v1/batch');
  }
  await browser.close();
  server.close();
  for (const s of seen) console.log(`host saw: ${s.line}`);
  for (const p of expected) {
    if (!seen.some((s) => s.path.replace(/\/$/, '') === p && !s.line.startsWith('OPTIONS'))) failures.push(`no request reached ${p}`);
  }
  for (const f of failures) console.error(`FAILED ${f}`);
  console.log(failures.length ? `${lib}: not all calls delivered` : `${lib}: all calls delivered`);
  return failures.length ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => { console.error(err && err.stack || err); process.exit(1); });
