// Scenario (e): when the server refuses the token (4403: not valid, or expired
// while the socket is open), the page stops reconnecting and asks for a new
// token; a new token brings it back. The dashboard first, then the Apollo example.
//
// "Stops reconnecting" is checked over a window (QUIET_MS) several times longer
// than the first retry's wait (at most 250 ms, shared/socket.ts): a page that
// still retried would open a new socket within it.
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> MARK1_JWT_SECRET=<the server's> node e2e/token-refused.mjs

import { env, eventually, expect, log, mintToken, openBrowser, run } from './lib.mjs';
import { dashboard } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const secret = env('MARK1_JWT_SECRET');
const QUIET_MS = 1500;
const SHORT_TTL_SECONDS = 4;

/** Counts the WebSockets the page opens. */
function countSockets(page) {
  const counter = { opened: 0 };
  page.on('websocket', () => (counter.opened += 1));
  return counter;
}

async function expectNoNewSocket(page, counter, what) {
  const before = counter.opened;
  await page.waitForTimeout(QUIET_MS);
  expect(
    counter.opened === before,
    `${what}: the page opened ${counter.opened - before} more socket(s) after 4403`,
  );
}

async function pasteToken(page, value) {
  await page.getByLabel('API token').fill(value);
  await page.getByRole('button', { name: 'Use token' }).click();
}

await run('token-refused', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;
  const board = dashboard(page);
  const sockets = countSockets(page);
  const banner = page.getByTestId('token-needed');
  const unauthorized = page.locator('[data-testid="connection"][data-state="unauthorized"]');

  // 1. A token the server cannot verify: refused at connection_init.
  await board.open(baseUrl, 'not-a-valid-token');
  await unauthorized.waitFor({ timeout: 5000 });
  await banner.waitFor({ timeout: 2000 });
  expect(
    await page.evaluate(() => document.activeElement?.getAttribute('aria-label') === 'API token'),
    'the token box should have the focus',
  );
  await expectNoNewSocket(page, sockets, 'dashboard, invalid token');
  log(`invalid token: badge "token rejected", banner shown, ${sockets.opened} socket(s) opened in all`);

  // 2. A valid token that expires while the socket is open: closed with 4403 at exp.
  const short = mintToken(secret, { sub: 'alice', roles: ['OPERATOR'], ttlSeconds: SHORT_TTL_SECONDS });
  await pasteToken(page, short);
  await board.waitConnected();
  expect(!(await banner.isVisible()), 'the banner should go once a new token is in use');
  log('short-lived token: connected');
  await unauthorized.waitFor({ timeout: (SHORT_TTL_SECONDS + 5) * 1000 });
  await banner.waitFor({ timeout: 2000 });
  const closed = await page.getByTestId('connection').innerText();
  expect(closed.includes('4403'), `the badge should say why: ${closed}`);
  await expectNoNewSocket(page, sockets, 'dashboard, expired token');
  log(`expired token: ${closed.replace(/\s+/g, ' ')}; no reconnect`);

  // 3. A fresh token: live again.
  await pasteToken(page, token);
  await board.waitConnected();
  await eventually('the banner to go', async () => !(await banner.isVisible()));
  log('new token: connected again');

  // 4. The Apollo example: the same for its graphql-ws link.
  await page.goto(`${baseUrl}/app/apollo-example/?token=not-a-valid-token`);
  await banner.waitFor({ timeout: 5000 });
  await expectNoNewSocket(page, sockets, 'Apollo example, invalid token');
  await pasteToken(page, token);
  await page.locator('table').waitFor({ timeout: 5000 });
  await eventually('the banner to go', async () => !(await banner.isVisible()));
  log('Apollo example: refused token → banner, no reconnect; new token → task list');

  expect(foreign.length === 0, `the pages tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
