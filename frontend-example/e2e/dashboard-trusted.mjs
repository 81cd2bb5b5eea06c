// Scenario (f): the dashboard against a server in trusted-documents mode
// (MARK1_TRUSTED_DOCUMENTS=frontend-example/dist/persisted-documents.json, the
// manifest this build ships). Every request the page makes names its document by
// hash alone and is answered without an error; the page shows what the server
// holds (tasks, agents, the event feed replayed through its subscription); and
// the same server refuses a document that is not in the manifest.
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> MARK1_SEED_TASK=<id> MARK1_SEED_AGENT=<id> node e2e/dashboard-trusted.mjs

import { env, expect, log, openBrowser, run } from './lib.mjs';
import { dashboard } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const seededTask = env('MARK1_SEED_TASK');
const seededAgent = env('MARK1_SEED_AGENT');

await run('dashboard-trusted', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;
  const board = dashboard(page);

  // What went over the wire: documents sent as text, and errors received.
  const withText = [];
  const errors = [];
  let hashed = 0;
  page.on('request', (request) => {
    if (!request.url().includes('/graphql') || request.method() !== 'POST') return;
    const body = JSON.parse(request.postData() ?? '{}');
    if (body.query) withText.push(`HTTP ${body.operationName}`);
    else if (body.extensions?.persistedQuery?.sha256Hash) hashed += 1;
  });
  page.on('response', async (response) => {
    if (!response.url().includes('/graphql') || response.request().method() !== 'POST') return;
    const body = await response.json().catch(() => ({}));
    if (response.status() !== 200 || body.errors)
      errors.push(`HTTP ${response.status()} ${JSON.stringify(body)}`);
  });
  page.on('websocket', (socket) => {
    socket.on('framesent', ({ payload }) => {
      const message = JSON.parse(String(payload));
      if (message.type !== 'subscribe') return;
      if (message.payload.query) withText.push(`subscribe ${message.payload.operationName}`);
      else if (message.payload.extensions?.persistedQuery?.sha256Hash) hashed += 1;
    });
    socket.on('framereceived', ({ payload }) => {
      const message = JSON.parse(String(payload));
      if (message.type === 'error') errors.push(`socket ${JSON.stringify(message)}`);
    });
  });

  await board.open(baseUrl, token);
  await board.waitConnected();
  await board.taskRow(seededTask).waitFor({ timeout: 5000 });
  await board.agentRow(seededAgent).waitFor({ timeout: 5000 });
  await page.locator(`.feed [data-event-type="TASK_CREATED"][data-task-id="${seededTask}"]`).waitFor({
    timeout: 5000,
  });
  log(`the dashboard shows task ${seededTask}, agent ${seededAgent} and the replayed feed`);

  expect(withText.length === 0, `documents sent as text: ${withText.join(', ')}`);
  expect(errors.length === 0, `errors: ${errors.join(' | ')}`);
  expect(hashed >= 9, `expected the page's 5 queries and 4 subscriptions by hash, saw ${hashed}`);
  log(`${hashed} operations named their document by hash alone; none failed`);

  // The same server refuses a document the manifest does not list.
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: '{ me { subject } }' }),
  });
  const refused = await response.json();
  expect(
    refused.errors?.[0]?.extensions?.code === 'PERSISTED_QUERY_NOT_ALLOWED' && !('data' in refused),
    `an unlisted document should be refused, got ${response.status} ${JSON.stringify(refused)}`,
  );
  log(`an unlisted document: ${refused.errors[0].message}`);

  expect(foreign.length === 0, `the page tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
