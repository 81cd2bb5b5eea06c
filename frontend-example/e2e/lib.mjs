// Shared helpers for the browser scenarios: env, GraphQL over HTTP, Chromium.
//
// Each scenario is a plain node script: it reads MARK1_URL and tokens from
// the environment, prints what it does, and exits 1 with a clear message on
// the first failed expectation. tests/e2e/test_browser.py runs them against
// a real `mark1 serve`.

import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

// Set MARK1_SCREENSHOTS=frontend-example/docs/screenshots to refresh the README's pictures.
export const SCREENSHOTS = process.env.MARK1_SCREENSHOTS || join(tmpdir(), 'mark1-screenshots');

/** Chromium flags for a headless run with no network but loopback. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export class Failure extends Error {}

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Failure(`environment variable ${name} is not set`);
  return value;
}

export function log(message) {
  const elapsed = ((performance.now() / 1000).toFixed(2) + 's').padStart(7);
  console.log(`[${elapsed}] ${message}`);
}

export function expect(condition, message) {
  if (!condition) throw new Failure(message);
}

/** POSTs one operation; returns `data`, or fails with the server's errors. */
export async function graphql(baseUrl, token, query, variables = {}) {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Failure(`POST /graphql answered ${response.status} with non-JSON: ${text.slice(0, 500)}`);
  }
  if (body.errors?.length || !body.data) {
    throw new Failure(
      `POST /graphql ${query.trim().split('\n')[0]} ${JSON.stringify(variables)} → ${response.status} ${JSON.stringify(body.errors ?? body)}`,
    );
  }
  return body.data;
}

/** The operations the scenarios drive the API with. */
export function api(baseUrl) {
  return {
    createTask: async (token, input) =>
      (
        await graphql(
          baseUrl,
          token,
          `
            mutation CreateTask($input: CreateTaskInput!) {
              createTask(input: $input) {
                id
                title
                status
                progress
              }
            }
          `,
          { input },
        )
      ).createTask,
    registerAgent: async (token, input) =>
      (
        await graphql(
          baseUrl,
          token,
          `
            mutation RegisterAgent($input: RegisterAgentInput!) {
              registerAgent(input: $input) {
                agent {
                  id
                  name
                  status
                }
                token
              }
            }
          `,
          { input },
        )
      ).registerAgent,
    claimTask: async (agentToken, agentId) =>
      (
        await graphql(
          baseUrl,
          agentToken,
          `
            mutation ClaimTask($agentId: ID!) {
              claimTask(agentId: $agentId) {
                id
                status
              }
            }
          `,
          { agentId },
        )
      ).claimTask,
    reportProgress: async (agentToken, taskId, progress, message) =>
      (
        await graphql(
          baseUrl,
          agentToken,
          `
            mutation ReportProgress($taskId: ID!, $progress: Float!, $message: String) {
              reportProgress(taskId: $taskId, progress: $progress, message: $message) {
                id
                status
                progress
              }
            }
          `,
          { taskId, progress, message },
        )
      ).reportProgress,
    completeTask: async (agentToken, taskId, result) =>
      (
        await graphql(
          baseUrl,
          agentToken,
          `
            mutation CompleteTask($taskId: ID!, $result: JSON) {
              completeTask(taskId: $taskId, result: $result) {
                id
                status
              }
            }
          `,
          { taskId, result },
        )
      ).completeTask,
    startWorkflow: async (token, input) =>
      (
        await graphql(
          baseUrl,
          token,
          `
            mutation StartWorkflow($input: StartWorkflowInput!) {
              startWorkflow(input: $input) {
                id
                name
                status
                steps {
                  index
                  name
                  status
                  task {
                    id
                  }
                }
              }
            }
          `,
          { input },
        )
      ).startWorkflow,
    subscriptionCount: async (token) =>
      (
        await graphql(
          baseUrl,
          token,
          `
            {
              systemMetrics {
                subscriptions
              }
            }
          `,
        )
      ).systemMetrics.subscriptions,
  };
}

/**
 * An HS256 token with the claims `mark1 token` writes, signed with the
 * server's secret (MARK1_JWT_SECRET), living `ttlSeconds`: for scenarios that
 * need a token to expire while they watch.
 */
export function mintToken(secret, { sub, roles, ttlSeconds }) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, roles, tenant: 'default', iat: now, exp: now + ttlSeconds };
  const unsigned = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** A unique, readable name for things this run creates. */
export function unique(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Opens Debian's Chromium (never a downloaded one) with a 1280×800 page
 * that may reach only `baseUrl`'s origin: any other request is aborted and
 * recorded, so a CDN dependency shows up as a failure, not a slow test.
 */
export async function openBrowser(baseUrl) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const allowed = new URL(baseUrl).host;
  const foreign = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || url.protocol === 'blob:' || url.host === allowed) return route.continue();
    foreign.push(url.toString());
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
  return { browser, context, page, foreign, consoleErrors };
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, name);
  await page.screenshot({ path, type: 'png' });
  log(`screenshot → ${path}`);
}

/** Waits for `check()` (run in node) to return a truthy value. */
export async function eventually(description, check, { timeout = 5000, interval = 50 } = {}) {
  const deadline = performance.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (performance.now() > deadline) {
      throw new Failure(
        `timed out after ${timeout} ms waiting for ${description}${last instanceof Error ? `: ${last.message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Runs a scenario: exit 0 when it returns, exit 1 with its message when
 * anything fails; the browser is closed either way.
 */
export async function run(name, scenario) {
  const handles = { browser: null };
  try {
    log(`scenario: ${name}`);
    await scenario(handles);
    log(`PASS ${name}`);
    process.exitCode = 0;
  } catch (error) {
    const message = error instanceof Failure ? error.message : (error?.stack ?? String(error));
    console.error(`FAIL ${name}: ${message}`);
    if (handles.page) {
      try {
        const path = join(process.env.MARK1_E2E_ARTIFACTS ?? tmpdir(), `failure-${name}.png`);
        await handles.page.screenshot({ path });
        console.error(`failure screenshot → ${path}`);
      } catch {
        /* the page may be gone */
      }
    }
    process.exitCode = 1;
  } finally {
    await handles.browser?.close().catch(() => {});
  }
}
