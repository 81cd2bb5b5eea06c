/** Where the API is and which token to present: shared by every page. */

export const TOKEN_KEY = 'mark1.token';

export interface Endpoints {
  /** GraphQL over HTTP, e.g. `http://host/graphql`. */
  http: string;
  /** GraphQL over WebSocket (graphql-transport-ws), e.g. `ws://host/graphql`. */
  ws: string;
}

/**
 * `?endpoint=` (absolute, or relative to this page) overrides the default,
 * the same origin's `/graphql`; the WebSocket URL is derived from it.
 */
export function resolveEndpoints(location: Location = window.location): Endpoints {
  const param = new URLSearchParams(location.search).get('endpoint');
  const http = new URL(param ?? '/graphql', location.href);
  const ws = new URL(http);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  return { http: http.toString(), ws: ws.toString() };
}

export function loadToken(): string | null {
  return window.localStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string | null): void {
  if (token) window.localStorage.setItem(TOKEN_KEY, token);
  else window.localStorage.removeItem(TOKEN_KEY);
}

/**
 * Moves a `?token=` from the address bar into localStorage, so it is kept
 * for the next visit but not left in the URL and the browser history.
 */
export function adoptTokenFromUrl(): string | null {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token) {
    saveToken(token.trim());
    url.searchParams.delete('token');
    window.history.replaceState(window.history.state, '', url);
  }
  return loadToken();
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}
