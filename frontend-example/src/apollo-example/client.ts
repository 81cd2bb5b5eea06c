import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';
import { bearer, resolveEndpoints } from '../shared/session';
import { isTokenRejected, jitteredRetryWait } from '../shared/socket';

/**
 * Queries over HTTP, subscriptions over graphql-ws, one normalized cache.
 * Tasks are cached as `Task:<id>` (the default `__typename` + `id` key), so
 * every `taskUpdates` message rewrites the one cached Task in place and
 * every view of it re-renders.
 *
 * The socket retries a lost connection for ever, with jittered waits, except
 * when the server refuses the token (4403: invalid, or expired while open):
 * then it stops and `onTokenRejected` lets the page ask for a new one.
 */
export function createApolloClient(token: string, onTokenRejected: () => void): ApolloClient {
  const { http, ws } = resolveEndpoints();
  const httpLink = new HttpLink({ uri: http, headers: { authorization: bearer(token) } });
  const wsLink = new GraphQLWsLink(
    createClient({
      url: ws,
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
  return new ApolloClient({
    link: ApolloLink.split(
      (operation) => operation.operationType === OperationTypeNode.SUBSCRIPTION,
      wsLink,
      httpLink,
    ),
    cache: new InMemoryCache(),
    // The Apollo devtools extension (window.__APOLLO_CLIENT__) only in `npm run dev`:
    // a production page does not hand its cache to whatever script asks.
    devtools: { enabled: import.meta.env.DEV, name: 'mark1-apollo-example' },
  });
}
