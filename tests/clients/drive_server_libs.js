// Sends identify, track, page, screen, group and alias with a published server-side Node library.
//
// Usage: node drive_server_libs.js segment-node|rudder-node BASE_URL WRITE_KEY USER_ID
// Exits 0 only when the library reported every call delivered (no callback error, no error event).
'use strict';

const [lib, base, writeKey, userId] = process.argv.slice(2);
if (!lib || !base || !writeKey || !userId) {
  console.error('usage: drive_server_libs.js segment-node|rudder-node BASE_URL WRITE_KEY USER_ID');
  process.exit(2);
}

const email = `${userId}@example.com`;
const previousId = `${userId}-previous`;
const anonymousId = `${userId}-anon`;
const failures = [];
const reports = [];

function callback(call) {
  return (err) => {
    if (err) failures.push(`${call}: ${err && err.message ? err.message : err}`);
    else reports.push(`${call}: delivered`);
  };
}

async function segmentNode() {
  const { Analytics } = require('@segment/analytics-node');
  // Library defaults except flushing after every event: same wire format, no 10 s wait.
  const analytics = new Analytics({ writeKey, host: base, flushAt: 1, flushInterval: 200, maxRetries: 0 });
  analytics.on('error', (err) => failures.push(`error event: ${err && err.reason ? err.reason : JSON.stringify(err)}`));
  analytics.on('http_response', (r) => reports.push(`http ${r.status} ${r.url}`));
  analytics.identify({ userId, anonymousId, traits: { email, plan: 'pro', name: 'Ada' } }, callback('identify'));
  analytics.track({ userId, event: 'Order Completed', properties: { order_id: 'o-1', total: 42.5, currency: 'USD' } }, callback('track'));
  analytics.page({ userId, category: 'Docs', name: 'Getting Started', properties: { url: 'https://example.com/docs', title: 'Getting Started' } }, callback('page'));
  analytics.screen({ userId, name: 'Home', properties: { variation: 'blue' } }, callback('screen'));
  analytics.group({ userId, groupId: 'team-1', traits: { name: 'Acme', plan: 'enterprise' } }, callback('group'));
  analytics.alias({ previousId, userId }, callback('alias'));
  await analytics.closeAndFlush({ timeout: 10000 });
}

async function rudderNode() {
  const Analytics = require('@rudderstack/rudder-sdk-node');
  // Library defaults (gzip on, retries on) except a short flush so the run is quick.
  const client = new Analytics(writeKey, {
    dataPlaneUrl: base,
    flushAt: 1,
    flushInterval: 200,
    retryCount: 0,
    errorHandler: (err) => failures.push(`errorHandler: ${err && err.message ? err.message : err}`),
  });
  const calls = [
    ['identify', { userId, anonymousId, traits: { email, plan: 'pro', name: 'Ada' } }],
    ['track', { userId, event: 'Order Completed', properties: { order_id: 'o-1', total: 42.5, currency: 'USD' } }],
    ['page', { userId, category: 'Docs', name: 'Getting Started', properties: { url: 'https://example.com/docs', title: 'Getting Started' } }],
    ['screen', { userId, name: 'Home', properties: { variation: 'blue' } }],
    ['group', { userId, groupId: 'team-1', traits: { name: 'Acme', plan: 'enterprise' } }],
    ['alias', { previousId, userId }],
  ];
  await Promise.all(calls.map(([call, msg]) => new Promise((resolve) => {
    client[call](msg, (err) => { callback(call)(err); resolve(); });
  })));
  await new Promise((resolve) => client.flush(() => resolve()));
}

const drivers = { 'segment-node': segmentNode, 'rudder-node': rudderNode };
if (!drivers[lib]) {
  console.error(`unknown library ${lib}`);
  process.exit(2);
}
const timer = setTimeout(() => { failures.push('timed out after 30 s'); finish(); }, 30000);
function finish() {
  clearTimeout(timer);
  for (const r of reports) console.log(r);
  for (const f of failures) console.error(`FAILED ${f}`);
  const ok = failures.length === 0 && reports.filter((r) => r.endsWith('delivered')).length === 6;
  console.log(ok ? `${lib}: all 6 calls delivered` : `${lib}: not all calls delivered`);
  process.exit(ok ? 0 : 1);
}
drivers[lib]().then(finish, (err) => { failures.push(`threw: ${err && err.stack ? err.stack : err}`); finish(); });
