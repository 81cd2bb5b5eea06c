import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { bearer, resolveEndpoints } from '../shared/session';
import { withDefaultAuthorization } from './auth';
import { writeSharedOperation, type SharedOperation } from './shareLink';

const DEFAULT_QUERY = `# Mark-1 Realtime. Queries and mutations go over HTTP,
# subscriptions over WebSocket (graphql-transport-ws).
# The token from ?token= (or the dashboard) is in the Headers tab;
# edit it there to act as someone else.

query Me {
  me {
    subject
    roles
    tenant
  }
}

subscription TaskUpdates {
  taskUpdates {
    id
    title
    status
    progress
  }
}
`;

export function createFetcher(token: string | null): Fetcher {
  const { http, ws } = resolveEndpoints();
  // With `subscriptionUrl` the toolkit opens each subscription's socket with
  // `{...wsConnectionParams, ...headers}`, so the Headers tab's Authorization
  // becomes the `connection_init` payload (the server matches the key
  // case-insensitively). Leaving wsConnectionParams empty keeps one source
  // of truth for the token: what the request's headers say.
  const fetcher = createGraphiQLFetcher({ url: http, subscriptionUrl: ws });
  return withDefaultAuthorization(fetcher, token);
}

interface Props {
  token: string | null;
  fetcher: Fetcher;
  /** From a share link (`?query=&variables=&operationName=`, shareLink.ts). */
  shared: SharedOperation;
}

export function GraphiQLPage({ token, fetcher, shared }: Props) {
  const headers = token ? JSON.stringify({ Authorization: bearer(token) }, null, 2) : '';
  const { query, variables, operationName } = shared;
  return (
    <GraphiQL
      fetcher={fetcher}
      defaultQuery={DEFAULT_QUERY}
      {...(query ? { initialQuery: query } : {})}
      {...(query && variables ? { initialVariables: variables } : {})}
      {...(query && operationName ? { operationName } : {})}
      onTabChange={(tabs) => writeSharedOperation(tabs, DEFAULT_QUERY)}
      defaultHeaders={headers}
      initialHeaders={headers}
      isHeadersEditorEnabled
      defaultEditorToolsVisibility="headers"
    />
  );
}
