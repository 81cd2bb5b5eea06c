import type { Fetcher, FetcherOpts } from '@graphiql/toolkit';
import { bearer } from '../shared/session';

function hasAuthorization(headers: Record<string, unknown> | undefined): boolean {
  return Object.keys(headers ?? {}).some((name) => name.toLowerCase() === 'authorization');
}

/**
 * Sends the stored token when the Headers tab names no Authorization, so
 * the schema loads and queries work even with an emptied headers editor;
 * an Authorization typed in the editor always wins.
 */
export function withDefaultAuthorization(fetcher: Fetcher, token: string | null): Fetcher {
  if (!token) return fetcher;
  return (params, options?: FetcherOpts) => {
    if (hasAuthorization(options?.headers)) return fetcher(params, options);
    const headers = { ...options?.headers, Authorization: bearer(token) };
    return fetcher(params, { ...options, headers });
  };
}
