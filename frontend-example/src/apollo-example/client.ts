import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { CombinedProtocolErrors, ServerError } from '@apollo/client/errors';
import { RetryLink } from '@apollo/client/link/retry';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';
import { bearer, resolveEndpoints } from '../shared/session';
import { isTokenRejected, jitteredRetryDelay, jitteredRetryWait } from '../shared/socket';
import type { SubscriptionTransport } from './transport';

/**
 * Queries over HTTP, subscriptions over graphql-ws or multipart HTTP
 * (`transport`), one normalized cache. Tasks are cached as `Task:<id>` (the
 * default `__typename` + `id` key), so every `taskUpdates` message rewrites
 * the one cached Task in place and every view of it re-renders.
 *
 * Either way a lost subscription is retried for ever, with jittered waits,
 * except when the server refuses the token: then it stops and
 * `onTokenRejected` lets the page ask for a new one.
 */
export function createApolloClient(
  token: string,
  transport: SubscriptionTransport,
  onTokenRejected: () => void,
): ApolloClient {
  const { http, ws } = resolveEndpoints();
  const httpLink = new HttpLink({ uri: http, headers: { authorization: bearer(token) } });
  const subscriptionLink =
    transport === 'multipart'
      ? multipartLink(httpLink, onTokenRejected)
      : graphqlWsLink(ws, token, onTokenRejected);
  return new ApolloClient({
    link: ApolloLink.split(
      (operation) => operation.operationType === OperationTypeNode.SUBSCRIPTION,
      subscriptionLink,
      httpLink,
    ),
    cache: new InMemoryCache(),
    // The Apollo devtools extension (window.__APOLLO_CLIENT__) only in `npm run dev`:
    // a production page does not hand its cache to whatever script asks.
    devtools: { enabled: import.meta.env.DEV, name: 'mark1-apollo-example' },
  });
}

/** One socket for every subscription; a close with 4403 (invalid, or expired while open) ends the retries. */
function graphqlWsLink(url: string, token: string, onTokenRejected: () => void): ApolloLink {
  return new GraphQLWsLink(
    createClient({
      url,
      connectionParams: { authorization: bearer(token) },
      retryAttempts: Infinity,
      shouldRetry: (event) => !isTokenRejected(event),
      retryWait: jitteredRetryWait,
      on: {
        closed: (event) => {
          if (isTokenRejected(event)) onTokenRejected();
        },
      },
    }),
  );
}

/**
 * Apollo's HttpLink runs a subscription as one multipart HTTP response by
 * itself (`Accept: multipart/mixed;subscriptionSpec=1.0`). HttpLink never
 * retries, so a RetryLink in front of it opens the stream again after a drop,
 * a SLOW_CONSUMER or a 429, with the socket's jittered waits, but not when
 * the token is refused (a 401 for the request, or UNAUTHENTICATED ending the
 * stream at the token's `exp`), where the socket would have been closed with 4403.
 */
function multipartLink(httpLink: HttpLink, onTokenRejected: () => void): ApolloLink {
  const retry = new RetryLink({
    // RetryLink counts attempts from 1; jitteredRetryDelay counts retries from 0.
    delay: (attempt) => jitteredRetryDelay(attempt - 1),
    attempts: (_attempt, _operation, error) => {
      if (!isStreamTokenRejected(error)) return true;
      onTokenRejected();
      return false;
    },
  });
  return ApolloLink.from([retry, httpLink]);
}

/** The server refused the stream's token: retrying with it cannot help. */
function isStreamTokenRejected(error: unknown): boolean {
  if (ServerError.is(error)) return error.statusCode === 401;
  if (CombinedProtocolErrors.is(error)) {
    return error.errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED');
  }
  return false;
}
