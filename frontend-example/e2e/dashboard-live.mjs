// Scenario (a): the dashboard shows a task created through the API within
// one second, and its progress bar moves when the agent reports progress.
//
//   MARK1_URL=http://127.0.0.1:8123 MARK1_TOKEN=<OPERATOR jwt> node e2e/dashboard-live.mjs

import { api, env, eventually, expect, log, openBrowser, run, screenshot, unique } from './lib.mjs';
import { dashboard } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const mark1 = api(baseUrl);

await run('dashboard-live', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;
  const board = dashboard(page);

  const baseline = await mark1.subscriptionCount(token);
  await board.open(baseUrl, token);
  await board.waitConnected();
  expect(!new URL(page.url()).searchParams.has('token'), 'the token should leave the address bar');
  const stored = await page.evaluate(() => window.localStorage.getItem('mark1.token'));
  expect(stored === token, `localStorage mark1.token should hold the token, has ${stored}`);
  await board.waitLive(mark1, token, baseline);

  // A capability of its own, so our agent can claim nothing but this task.
  const capability = unique('e2e');
  const title = unique('e2e-task');
  const task = await mark1.createTask(token, { title, capability, priority: 100 });
  const created = performance.now();
  log(`created task ${task.id} "${title}"`);
  await board
    .taskRow(task.id)
    .waitFor({ timeout: 1000 })
    .catch(() => {
      throw new Error(`task ${task.id} did not appear on the dashboard within 1 s of createTask`);
    });
  log(`task row appeared after ${Math.round(performance.now() - created)} ms`);
  expect((await board.progress(task.id)) === 0, 'a new task starts at 0%');

  const { agent, token: agentToken } = await mark1.registerAgent(token, {
    name: unique('e2e-agent'),
    capabilities: [capability],
  });
  log(`registered agent ${agent.id}`);
  await board.agentRow(agent.id).waitFor({ timeout: 2000 });

  const claimed = await mark1.claimTask(agentToken, agent.id);
  expect(
    claimed?.id === task.id,
    `claimTask should hand out task ${task.id}, gave ${JSON.stringify(claimed)}`,
  );
  await eventually('the task row to show RUNNING', () => board.taskStatusIs(task.id, 'RUNNING'), {
    timeout: 1000,
  });

  await mark1.reportProgress(agentToken, task.id, 0.5, 'halfway');
  const reported = performance.now();
  await eventually('the progress bar to reach 50%', async () => (await board.progress(task.id)) === 50, {
    timeout: 1000,
  });
  log(`progress bar at 50% after ${Math.round(performance.now() - reported)} ms`);

  await eventually('TASK_PROGRESS in the event feed', () => board.feedHas('TASK_PROGRESS', task.id), {
    timeout: 1000,
  });

  // The type filter narrows the feed through the subscription's `filter`.
  await board.filterTypes(['TASK_CREATED']);
  await eventually('the filtered feed to show our TASK_CREATED', () =>
    board.feedHas('TASK_CREATED', task.id),
  );
  const types = await board.feedTypes();
  expect(
    types.every((type) => type === 'TASK_CREATED'),
    `filtered feed shows other types: ${[...new Set(types)]}`,
  );
  await board.filterTypes([]);

  // Something on every panel for the screenshot.
  await mark1.startWorkflow(token, {
    name: unique('e2e-pipeline'),
    steps: [
      { name: 'fetch', capability },
      { name: 'summarise', capability },
      { name: 'publish', capability },
    ],
  });
  await mark1.createTask(token, { title: unique('e2e-queued'), capability: 'gpu' });
  await mark1.reportProgress(agentToken, task.id, 0.75, 'nearly there');
  await eventually('the progress bar to reach 75%', async () => (await board.progress(task.id)) === 75);
  await page.locator('.workflows [data-workflow-id]').first().waitFor({ timeout: 2000 });
  await screenshot(page, 'dashboard.png');

  expect(foreign.length === 0, `the page tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
