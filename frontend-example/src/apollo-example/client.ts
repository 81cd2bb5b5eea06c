import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';
import { bearer, resolveEndpoints } from '../shared/session';

/**
 * Queries over HTTP, subscriptions over graphql-ws, one normalized cache.
 * Tasks are cached as `Task:<id>` (the default `__typename` + `id` key), so
 * every `taskUpdates` message rewrites the one cached Task in place and
 * every view of it re-renders.
 */
export function createApolloClient(token: string): ApolloClient {
  const { http, ws } = resolveEndpoints();
  const httpLink = new HttpLink({ uri: http, headers: { authorization: bearer(token) } });
  const wsLink = new GraphQLWsLink(
    createClient({
      url: ws,
      connectionParams: { authorization: bearer(token) },
      retryAttempts: Infinity,
      shouldRetry: () => true,
    }),
  );
  return new ApolloClient({
    link: ApolloLink.split(
      (operation) => operation.operationType === OperationTypeNode.SUBSCRIPTION,
      wsLink,
      httpLink,
    ),
    cache: new InMemoryCache(),
    // Registers window.__APOLLO_CLIENT__, which the browser test reads the cache through.
    devtools: { enabled: true, name: 'mark1-apollo-example' },
  });
}
