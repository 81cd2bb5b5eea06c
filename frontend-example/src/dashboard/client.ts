import {
  Client,
  cacheExchange,
  fetchExchange,
  subscriptionExchange,
  type ExecutionResult,
  type SubscriptionForwarder,
} from '@urql/core';
import type { Client as SocketClient } from 'graphql-ws';
import {
  isPersistedQueryNotFound,
  persistedExchange,
  persistedFetch,
  persistedText,
} from '../shared/persisted';
import { bearer, type Endpoints } from '../shared/session';

interface SubscribePayload {
  /**
   * Empty while only the document's hash is sent (shared/persisted.ts): graphql-ws
   * requires a string, and the server reads an empty query beside a hash as none.
   */
  query: string;
  operationName?: string;
  variables: Record<string, unknown>;
  extensions?: Record<string, unknown>;
}

/**
 * graphql-ws sends this very payload object again each time it reconnects
 * (client.ts: `subscribe` loops over `connect()` and re-sends `payload`).
 * Keeping an `events` subscription's `$after` at the id of the last event
 * delivered therefore makes the retry resume where the dropped socket
 * stopped: the server replays what was missed, then goes live.
 */
function rememberEventCursor(payload: SubscribePayload, result: ExecutionResult): void {
  const data = result.data as { events?: { id?: unknown } } | null | undefined;
  const id = data?.events?.id;
  if (typeof id === 'string' && 'after' in payload.variables) payload.variables.after = id;
}

/**
 * The manifest's text for a hash-only `subscribe` the server did not know.
 * It stays in the payload, so a later resubscription (after a reconnect to a
 * restarted server, whose APQ store is empty) registers the hash again.
 */
function textToResend(payload: SubscribePayload, error: unknown): string | undefined {
  if (payload.query !== '' || !isPersistedQueryNotFound(error)) return undefined;
  const { persistedQuery } = (payload.extensions ?? {}) as { persistedQuery?: { sha256Hash?: unknown } };
  return persistedText(persistedQuery?.sha256Hash);
}

function forwardTo(socket: SocketClient): SubscriptionForwarder {
  return (request) => {
    const payload: SubscribePayload = {
      query: request.query ?? '',
      variables: { ...request.variables },
      ...(request.operationName ? { operationName: request.operationName } : {}),
      ...(request.extensions ? { extensions: request.extensions } : {}),
    };
    return {
      subscribe(observer) {
        let unsubscribe = () => {};
        const start = () => {
          unsubscribe = socket.subscribe<ExecutionResult['data'], ExecutionResult['extensions']>(payload, {
            next(result) {
              const executionResult = result as ExecutionResult;
              rememberEventCursor(payload, executionResult);
              observer.next(executionResult);
            },
            error: (error) => {
              const text = textToResend(payload, error);
              if (text === undefined) return observer.error(error);
              payload.query = text;
              start();
            },
            complete: () => observer.complete(),
          });
        };
        start();
        return { unsubscribe: () => unsubscribe() };
      },
    };
  };
}

/**
 * urql over HTTP for queries and over the shared socket for subscriptions;
 * every document goes as its persisted hash (shared/persisted.ts).
 */
export function createUrqlClient(endpoints: Endpoints, token: string, socket: SocketClient): Client {
  return new Client({
    url: endpoints.http,
    requestPolicy: 'cache-and-network',
    preferGetMethod: false, // POST: keeps documents out of URLs and access logs
    fetchOptions: () => ({ headers: { authorization: bearer(token) } }),
    fetch: persistedFetch,
    exchanges: [
      persistedExchange, // first: cacheExchange's copy of the document has no __meta__.hash
      cacheExchange,
      fetchExchange,
      subscriptionExchange({ forwardSubscription: forwardTo(socket) }),
    ],
  });
}
