// What the scenarios know about the dashboard's markup, in one place.

import { eventually } from './lib.mjs';

/** How many subscriptions an idle dashboard holds: tasks, agents, workflow starts, event feed. */
export const DASHBOARD_SUBSCRIPTIONS = 4;

export async function waitForSubscriptions(mark1, token, count) {
  await eventually(
    `the server to hold ${count} subscriptions`,
    async () => (await mark1.subscriptionCount(token)) >= count,
    {
      timeout: 5000,
      interval: 100,
    },
  );
}

export function dashboard(page) {
  const connection = page.getByTestId('connection');
  return {
    open: (baseUrl, token) => page.goto(`${baseUrl}/app/?token=${encodeURIComponent(token)}`),

    connectionState: () => connection.getAttribute('data-state'),

    waitConnected: (timeout = 10_000) =>
      page.locator('[data-testid="connection"][data-state="connected"]').waitFor({ timeout }),

    /**
     * Waits until the server holds `expected` more subscriptions than
     * `baseline` (systemMetrics counts this process's), so what the scenario
     * does next is seen live instead of racing the `subscribe` messages.
     */
    waitLive: async (mark1, token, baseline, expected = DASHBOARD_SUBSCRIPTIONS) => {
      await page.getByTestId('feed-state').waitFor({ timeout: 5000 });
      await waitForSubscriptions(mark1, token, baseline + expected);
    },

    taskRow: (id) => page.locator(`.tasks [data-task-id="${id}"]`),
    agentRow: (id) => page.locator(`.agents [data-agent-id="${id}"]`),

    taskStatusIs: async (id, status) =>
      (await page.locator(`.tasks [data-task-id="${id}"]`).getAttribute('data-status')) === status,

    progress: async (id) =>
      Number(
        await page
          .locator(`.tasks [data-task-id="${id}"] [role="progressbar"]`)
          .getAttribute('aria-valuenow'),
      ),

    feedHas: async (type, taskId) =>
      (await page.locator(`.feed [data-event-type="${type}"][data-task-id="${taskId}"]`).count()) > 0,

    feedTypes: () =>
      page.locator('.feed [data-event-type]').evaluateAll((rows) => rows.map((row) => row.dataset.eventType)),

    feedIds: () =>
      page
        .locator('.feed [data-event-id]')
        .evaluateAll((rows) => rows.map((row) => Number(row.dataset.eventId))),

    /** Sets the feed's type filter to exactly `types` (empty: all). */
    filterTypes: async (types) => {
      await page.locator('.filter button.chip').click(); // "all" clears the selection
      for (const type of types)
        await page.locator(`.filter label:has(input[data-event-type="${type}"])`).click();
    },
  };
}
