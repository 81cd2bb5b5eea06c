// Scenario (c): a browser's GET /graphql gets the bundled GraphiQL, which
// loads with no host but the API's, runs a query over HTTP and a
// subscription over graphql-ws, both with the token from ?token=. Every page
// is opened through a share link, /graphql?query=…(&variables=…), which a
// browser gets as GraphiQL with the operation filled in, not as JSON.
//
//   MARK1_URL=… MARK1_TOKEN=<OPERATOR jwt> node e2e/graphiql.mjs

import { api, env, eventually, expect, log, openBrowser, run, screenshot, unique } from './lib.mjs';

const baseUrl = env('MARK1_URL');
const token = env('MARK1_TOKEN');
const mark1 = api(baseUrl);

/** A share link to `query` (and `variables`), with the token the page keeps. */
function shareLink(query, variables) {
  return `${baseUrl}/graphql?${new URLSearchParams({ token, query, ...(variables ? { variables } : {}) })}`;
}

/** GraphiQL's result pane, as text (Monaco renders it as lines of spans). */
const resultText = (page) => page.locator('.graphiql-response').innerText();

async function runOperation(page, query, variables) {
  const response = await page.goto(shareLink(query, variables));
  expect(response?.ok(), `GET /graphql answered ${response?.status()}`);
  expect(
    (response?.headers()['content-type'] ?? '').startsWith('text/html'),
    `GET /graphql with Accept: text/html should be GraphiQL, got ${response?.headers()['content-type']}`,
  );
  await page.locator('.graphiql-execute-button').waitFor({ timeout: 10_000 });
  // The schema is fetched with the token; the doc explorer needs it.
  await eventually('the query editor to hold the operation', async () =>
    (await page.locator('.graphiql-query-editor').innerText()).includes(query.split(/\s+/)[1] ?? query),
  );
  await page.locator('.graphiql-execute-button').click();
}

await run('graphiql', async (handles) => {
  Object.assign(handles, await openBrowser(baseUrl));
  const { page, foreign, consoleErrors } = handles;

  await runOperation(page, '{ me { subject } }');
  const me = await eventually('the result of { me { subject } }', async () => {
    const text = await resultText(page);
    return text.includes('"subject"') ? text : null;
  });
  log(`query result: ${me.replace(/\s+/g, ' ')}`);
  expect(me.includes('"alice"') || me.includes('"subject": "'), `unexpected result: ${me}`);
  const stored = await page.evaluate(() => window.localStorage.getItem('mark1.token'));
  expect(stored === token, 'GraphiQL should keep the ?token= in localStorage mark1.token');
  const address = new URL(page.url());
  expect(!address.searchParams.has('token'), 'the token should leave the address bar');
  expect(
    address.searchParams.get('query') === '{ me { subject } }',
    `the address bar should stay a share link of the operation: ${page.url()}`,
  );

  // A share link with variables: the operation needs them, so its result shows they arrived.
  const shared = await mark1.createTask(token, { title: unique('shared') });
  await runOperation(
    page,
    'query SharedTask($id: ID!) { task(id: $id) { title } }',
    JSON.stringify({ id: shared.id }),
  );
  const sharedResult = await eventually("the shared operation's result", async () => {
    const text = await resultText(page);
    return text.includes(shared.title) ? text : null;
  });
  log(`share link with variables: ${sharedResult.replace(/\s+/g, ' ')}`);

  // The Headers tab is what is sent: a bad token typed there is refused.
  const headersEditor = page.locator('section[aria-label="Headers"] .graphiql-editor:not(.hidden)');
  expect((await headersEditor.innerText()).includes('Bearer'), 'the Headers tab should hold the token');
  await headersEditor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.insertText('{"Authorization": "Bearer not-a-jwt"}');
  // Monaco auto-closed the brace and quotes we typed; drop what it added after the cursor.
  await page.keyboard.press('Shift+End');
  await page.keyboard.press('Delete');
  await page.locator('.graphiql-execute-button').click();
  const refused = await eventually('UNAUTHENTICATED for the edited header', async () => {
    const text = await resultText(page);
    return text.includes('UNAUTHENTICATED') ? text : null;
  });
  log(`with the edited header: ${refused.replace(/\s+/g, ' ').slice(0, 120)}`);

  await runOperation(page, 'subscription { taskUpdates { id status } }');
  // The subscribe message races our mutation; create tasks until one comes through.
  let seen = null;
  for (let attempt = 1; attempt <= 10 && !seen; attempt += 1) {
    const task = await mark1.createTask(token, { title: unique('graphiql-sub') });
    seen = await eventually(
      `task ${task.id} in the subscription's result`,
      async () => ((await resultText(page)).includes(`"${task.id}"`) ? task : null),
      { timeout: 1000 },
    ).catch(() => null);
    if (!seen) log(`attempt ${attempt}: task ${task.id} not (yet) in the result pane`);
  }
  expect(seen, 'the taskUpdates subscription never showed a task created over HTTP');
  log(`subscription delivered task ${seen.id}`);
  await screenshot(page, 'graphiql.png');

  expect(foreign.length === 0, `GraphiQL tried to reach other hosts: ${foreign.join(', ')}`);
  expect(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
});
