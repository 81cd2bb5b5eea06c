// Scenario (b): after the server restarts, the dashboard reconnects on its
// own and its event feed catches up from its last event id, so events that
// happened before it had resubscribed are not lost.
//
// The restart is done by whoever runs this script, over stdin/stdout:
//   this script prints   READY_FOR_RESTART
//   the runner restarts `mark1 serve` (same port, same data dir), waits for
//   /healthz, and writes  RESTARTED  on a line to this script's stdin.
// Then this script creates 3 tasks at once and expects all 3 TASK_CREATED
// events in the feed, the badge back at "connected", and the feed's ids
// gap-free and unduplicated.
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> node e2e/dashboard-reconnect.mjs

import { createInterface } from 'node:readline';
import { api, env, eventually, expect, log, openBrowser, run, unique } from './lib.mjs';
import { dashboard } from './pages.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const mark1 = api(baseUrl);
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

async function waitForLine(expected, timeout = 60_000) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no "${expected}" on stdin within ${timeout} ms`)), timeout);
  });
  try {
    for (;;) {
      const { value, done } = await Promise.race([lines.next(), expired]);
      if (done) throw new Error(`stdin closed before "${expected}"`);
      if (value.trim() === expected) return;
    }
  } finally {
    clearTimeout(timer);
  }
}

await run('dashboard-reconnect', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page } = handles;
  const board = dashboard(page);

  // Record every state the badge goes through, however briefly.
  await page.addInitScript(() => {
    window.__connectionStates = [];
    new MutationObserver(() => {
      const state = document.querySelector('[data-testid="connection"]')?.getAttribute('data-state');
      if (state && window.__connectionStates.at(-1) !== state) window.__connectionStates.push(state);
    }).observe(document, {
      subtree: true,
      attributes: true,
      childList: true,
      attributeFilter: ['data-state'],
    });
  });

  // Every `subscribe` the page sends for the event feed, and on which socket.
  const feedSubscribes = [];
  let sockets = 0;
  page.on('websocket', (socket) => {
    const index = (sockets += 1);
    socket.on('framesent', ({ payload }) => {
      const message = JSON.parse(String(payload));
      if (message.type === 'subscribe' && message.payload.operationName === 'EventStream') {
        feedSubscribes.push({ socket: index, after: message.payload.variables.after });
      }
    });
  });

  const baseline = await mark1.subscriptionCount(token);
  await board.open(baseUrl, token);
  await board.waitConnected();
  await board.waitLive(mark1, token, baseline);

  const before = await mark1.createTask(token, { title: unique('before-restart') });
  await eventually(
    'the pre-restart TASK_CREATED in the feed',
    () => board.feedHas('TASK_CREATED', before.id),
    {
      timeout: 2000,
    },
  );
  const lastBefore = Math.max(...(await board.feedIds()));
  log(`feed has task ${before.id}, last event #${lastBefore}; asking for a server restart`);

  console.log('READY_FOR_RESTART');
  await waitForLine('RESTARTED');
  stdin.close(); // an open stdin would keep node alive after the scenario
  process.stdin.destroy();
  const created = [];
  for (let i = 1; i <= 3; i += 1)
    created.push(await mark1.createTask(token, { title: unique(`after-restart-${i}`) }));
  log(`server restarted; created tasks ${created.map((task) => task.id).join(', ')} at once`);

  for (const task of created) {
    await eventually(
      `TASK_CREATED of task ${task.id} in the feed`,
      () => board.feedHas('TASK_CREATED', task.id),
      {
        timeout: 10_000,
      },
    );
  }
  await board.waitConnected(10_000);
  const states = await page.evaluate(() => window.__connectionStates);
  log(`connection states seen: ${states.join(' → ')}`);
  expect(states.includes('reconnecting'), `the badge never showed "reconnecting": ${states.join(' → ')}`);
  expect(states.at(-1) === 'connected', `the badge should end at "connected": ${states.join(' → ')}`);

  const ids = await board.feedIds();
  const sorted = [...ids].sort((a, b) => a - b);
  expect(new Set(ids).size === ids.length, `the feed shows an event twice: ${sorted.join(',')}`);
  for (let i = 1; i < sorted.length; i += 1) {
    expect(
      sorted[i] === sorted[i - 1] + 1,
      `the feed skipped events between #${sorted[i - 1]} and #${sorted[i]}`,
    );
  }
  log(`feed holds events #${sorted[0]}…#${sorted.at(-1)} with no gap and no duplicate`);

  // The resubscription asked for exactly what the feed had not seen.
  const resumed = feedSubscribes.filter((subscribe) => subscribe.socket > 1);
  log(`event feed subscribes: ${JSON.stringify(feedSubscribes)}`);
  expect(resumed.length > 0, 'the event feed never resubscribed on the new socket');
  expect(
    resumed[0].after === String(lastBefore),
    `the feed should resume after #${lastBefore}, it asked for after=${resumed[0].after}`,
  );

  // The task list catches up too (it refetches after a reconnect).
  for (const task of created) await board.taskRow(task.id).waitFor({ timeout: 5000 });
});
