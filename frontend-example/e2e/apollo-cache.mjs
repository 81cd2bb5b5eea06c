// Scenario (d): the Apollo Client example's normalized cache follows
// taskUpdates. A task loaded by the `tasks` query changes status in the
// cache (Task:<id>) when an agent works on it through the API; a task
// created later is added by the subscription. The page's rows read each
// task from the cache (useFragment on Task:<id>), not from the query's
// result, so the rows are the cache as the page sees it: the production
// build has no Apollo devtools hook (window.__APOLLO_CLIENT__) to read.
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> node e2e/apollo-cache.mjs

import { api, env, eventually, expect, log, openBrowser, run, unique } from './lib.mjs';
import { waitForSubscriptions } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const mark1 = api(baseUrl);

await run('apollo-cache', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;

  // A capability of its own, so our agent can claim nothing but this task.
  const capability = unique('apollo');
  const task = await mark1.createTask(token, { title: unique('apollo-task'), capability, priority: 100 });
  log(`created task ${task.id} before the page loads`);

  const baseline = await mark1.subscriptionCount(token);
  await page.goto(`${baseUrl}/app/apollo-example/?token=${encodeURIComponent(token)}`);
  const row = page.locator(`tr[data-task-id="${task.id}"]`);
  await row.waitFor({ timeout: 5000 });
  expect((await row.getAttribute('data-status')) === 'PENDING', 'the task starts PENDING');

  expect((await row.locator('code').innerText()) === `Task:${task.id}`, 'the row shows its cache key');
  expect(
    await page.evaluate(() => window.__APOLLO_CLIENT__ === undefined),
    'a production build must not register the Apollo devtools hook',
  );

  // Wait until the page's taskUpdates subscription is held by the server.
  await waitForSubscriptions(mark1, token, baseline + 1);

  const { agent, token: agentToken } = await mark1.registerAgent(token, {
    name: unique('apollo-agent'),
    capabilities: [capability],
  });
  const claimed = await mark1.claimTask(agentToken, agent.id);
  expect(
    claimed?.id === task.id,
    `claimTask should hand out task ${task.id}, gave ${JSON.stringify(claimed)}`,
  );
  await eventually(
    'Task:<id> in the cache to be RUNNING',
    async () => (await row.getAttribute('data-status')) === 'RUNNING',
    { timeout: 2000 },
  );
  log('Task is RUNNING in the cache and on the page');

  await mark1.completeTask(agentToken, task.id, { ok: true });
  await eventually(
    'Task:<id> in the cache to be SUCCEEDED',
    async () => (await row.getAttribute('data-status')) === 'SUCCEEDED',
    { timeout: 2000 },
  );
  expect((await row.innerText()).includes('SUCCEEDED'), 'the row shows SUCCEEDED');
  log('Task is SUCCEEDED in the cache and on the page');

  const later = await mark1.createTask(token, { title: unique('apollo-later') });
  await page.locator(`tr[data-task-id="${later.id}"]`).waitFor({ timeout: 2000 });
  log(`task ${later.id}, created after load, was added to the list by the subscription`);

  expect(foreign.length === 0, `the page tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
