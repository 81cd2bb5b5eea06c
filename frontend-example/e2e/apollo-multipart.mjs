// Scenario (g): the Apollo Client example with `?transport=multipart` runs
// `taskUpdates` through Apollo's HttpLink as one multipart HTTP response, and
// never opens a WebSocket. A refused token (401 for the stream) shows the
// token notice with no retry; a good token brings the task list, and a task
// created and then cancelled over HTTP reaches it live; at the token's `exp`
// the server ends the stream with UNAUTHENTICATED, and the page asks for a
// new token again without opening another stream.
//
// "No retry" is checked over a window (QUIET_MS) several times longer than
// the first retry's wait (at most 250 ms, shared/socket.ts).
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> MARK1_JWT_SECRET=<the server's> node e2e/apollo-multipart.mjs

import { api, env, eventually, expect, graphql, log, mintToken, openBrowser, run, unique } from './lib.mjs';
import { waitForSubscriptions } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const secret = env('MARK1_JWT_SECRET');
const mark1 = api(baseUrl);
const QUIET_MS = 1500;
const SHORT_TTL_SECONDS = 5;
const SUBSCRIPTION = 'TaskUpdatesForApollo';

/** The page's subscription requests, as the browser sent them and saw them answered. */
function recordStreams(page) {
  const streams = [];
  page.on('request', (request) => {
    if (request.method() !== 'POST' || new URL(request.url()).pathname !== '/graphql') return;
    if (request.postDataJSON()?.operationName !== SUBSCRIPTION) return;
    streams.push({ accept: request.headers().accept ?? '', response: request.response() });
  });
  return streams;
}

async function expectNoNewStream(page, streams, what) {
  const before = streams.length;
  await page.waitForTimeout(QUIET_MS);
  expect(
    streams.length === before,
    `${what}: the page sent ${streams.length - before} more subscription request(s)`,
  );
}

async function pasteToken(page, value) {
  await page.getByLabel('API token').fill(value);
  await page.getByRole('button', { name: 'Use token' }).click();
}

/** `mark1_http_streams_open` on the server's /metrics. */
async function openHttpStreams() {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((row) => row.startsWith('mark1_http_streams_open '));
  return Number(line?.split(' ')[1] ?? NaN);
}

await run('apollo-multipart', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  const streams = recordStreams(page);
  const banner = page.getByTestId('token-needed');

  // 1. A token the server cannot verify: the stream is answered 401, and not retried.
  await page.goto(`${baseUrl}/app/apollo-example/?transport=multipart&token=not-a-valid-token`);
  const shown = page.getByTestId('transport');
  expect(
    (await shown.getAttribute('data-transport')) === 'multipart',
    `the page should say it uses multipart, says ${await shown.innerText()}`,
  );
  await banner.waitFor({ timeout: 5000 });
  await expectNoNewStream(page, streams, 'invalid token');
  expect(streams.length === 1, `one subscription request for the invalid token, saw ${streams.length}`);
  const refused = await streams[0].response;
  expect(refused?.status() === 401, `the stream should be refused with 401, got ${refused?.status()}`);
  // Chromium logs every 4xx response to the console; that one is expected.
  const expected = (message) => message.includes('status of 401');
  expect(consoleErrors.every(expected), `console errors: ${consoleErrors.join(' | ')}`);
  consoleErrors.length = 0;
  log(`invalid token: 401, notice shown, no retry in ${QUIET_MS} ms`);

  // 2. A token that lives a few seconds: the list, then live updates over the stream.
  const baseline = await mark1.subscriptionCount(token);
  const short = mintToken(secret, { sub: 'alice', roles: ['OPERATOR'], ttlSeconds: SHORT_TTL_SECONDS });
  await pasteToken(page, short);
  await page.locator('table').waitFor({ timeout: 5000 });
  await eventually('the notice to go', async () => !(await banner.isVisible()));
  await waitForSubscriptions(mark1, token, baseline + 1);
  await eventually('the server to hold an HTTP stream', async () => (await openHttpStreams()) >= 1);

  const task = await mark1.createTask(token, {
    title: unique('multipart-task'),
    capability: unique('multipart'),
  });
  const row = page.locator(`tr[data-task-id="${task.id}"]`);
  await row.waitFor({ timeout: 2000 });
  log(`task ${task.id}, created over HTTP, reached the page over the stream`);
  await graphql(baseUrl, token, 'mutation Cancel($id: ID!) { cancelTask(id: $id) { id status } }', {
    id: task.id,
  });
  await eventually(
    'Task:<id> in the cache to be CANCELLED',
    async () => (await row.getAttribute('data-status')) === 'CANCELLED',
    { timeout: 2000 },
  );
  log('cancelTask reached Task:<id> in the cache and the row');

  expect(streams.length === 2, `one more subscription request for the good token, saw ${streams.length - 1}`);
  const live = await streams[1].response;
  const contentType = live?.headers()['content-type'] ?? '';
  expect(
    /multipart\/mixed/i.test(streams[1].accept) && /subscriptionSpec/i.test(streams[1].accept),
    `the subscription should ask for multipart, Accept: ${streams[1].accept}`,
  );
  expect(
    live?.status() === 200 && contentType.startsWith('multipart/mixed'),
    `the subscription should be answered with a multipart stream: ${live?.status()} ${contentType}`,
  );
  log(`subscription: Accept ${streams[1].accept} → ${live.status()} ${contentType}`);

  // 3. The token expires: the server ends the stream with UNAUTHENTICATED, and it is not retried.
  await banner.waitFor({ timeout: (SHORT_TTL_SECONDS + 5) * 1000 });
  await expectNoNewStream(page, streams, 'expired token');
  expect(streams.length === 2, `the expired stream was opened again: ${streams.length} requests in all`);
  log(`expired token: notice shown, no new stream in ${QUIET_MS} ms`);

  expect(sockets.length === 0, `the page opened WebSocket(s): ${sockets.join(', ')}`);
  expect(foreign.length === 0, `the page tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
