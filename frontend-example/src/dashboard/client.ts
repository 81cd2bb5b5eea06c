import {
  Client,
  cacheExchange,
  fetchExchange,
  subscriptionExchange,
  type ExecutionResult,
  type SubscriptionForwarder,
} from '@urql/core';
import type { Client as SocketClient } from 'graphql-ws';
import { bearer, type Endpoints } from '../shared/session';

interface SubscribePayload {
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
        const unsubscribe = socket.subscribe<ExecutionResult['data'], ExecutionResult['extensions']>(
          payload,
          {
            next(result) {
              const executionResult = result as ExecutionResult;
              rememberEventCursor(payload, executionResult);
              observer.next(executionResult);
            },
            error: (error) => observer.error(error),
            complete: () => observer.complete(),
          },
        );
        return { unsubscribe };
      },
    };
  };
}

/** urql over HTTP for queries and over the shared socket for subscriptions. */
export function createUrqlClient(endpoints: Endpoints, token: string, socket: SocketClient): Client {
  return new Client({
    url: endpoints.http,
    requestPolicy: 'cache-and-network',
    preferGetMethod: false, // POST: keeps documents out of URLs and access logs
    fetchOptions: () => ({ headers: { authorization: bearer(token) } }),
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({ forwardSubscription: forwardTo(socket) }),
    ],
  });
}
