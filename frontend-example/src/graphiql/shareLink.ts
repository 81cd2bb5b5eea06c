import type { GraphiQLProps } from 'graphiql';

type TabsState = Parameters<NonNullable<GraphiQLProps['onTabChange']>>[0];

/**
 * Share links: `/graphql?query=…&variables=…&operationName=…` opened in a
 * browser serves this page (the server sends GraphiQL to a GET whose Accept
 * prefers text/html), which opens with them filled in. `#query=…` (older
 * links) works too. The address bar follows the active tab, so copying it
 * shares what is on screen; headers never go into it: they hold the token.
 */
export interface SharedOperation {
  query: string | null;
  variables: string | null;
  operationName: string | null;
}

export function readSharedOperation(location: Location = window.location): SharedOperation {
  const search = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const pick = (name: string) => search.get(name) ?? fragment.get(name);
  return { query: pick('query'), variables: pick('variables'), operationName: pick('operationName') };
}

/** Puts the active tab's operation in the address bar (`defaultQuery` leaves it bare). */
export function writeSharedOperation(tabs: TabsState, defaultQuery: string): void {
  const tab = tabs.tabs[tabs.activeTabIndex];
  if (!tab) return;
  const url = new URL(window.location.href);
  url.hash = '';
  const shown = tab.query && tab.query !== defaultQuery ? tab.query : null;
  const values = { query: shown, variables: shown && tab.variables?.trim() ? tab.variables : null };
  for (const [name, value] of Object.entries(values)) {
    if (value) url.searchParams.set(name, value);
    else url.searchParams.delete(name);
  }
  url.searchParams.delete('operationName'); // GraphiQL picks the operation from the document
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, '', url);
}
