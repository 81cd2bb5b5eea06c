/**
 * Persisted documents: requests carry a document's hash instead of its text.
 *
 * graphql-codegen's client preset (`persistedDocuments: true`) gives every
 * `graphql()` document its id as `__meta__.hash` ("sha256:<hex>") and writes
 * the manifest {id: text} that this module imports. A request sends the hash
 * as Apollo's APQ extension (`extensions.persistedQuery.sha256Hash`). A
 * server in trusted-documents mode knows every hash from the same manifest;
 * any other server answers PERSISTED_QUERY_NOT_FOUND the first time, and the
 * request is sent again with the manifest's text, which hashes to the hash
 * (the standard APQ round trip). The text sent is the manifest's, not a
 * client's re-print of the document, so the server's hash check holds.
 */
import { makeOperation, mapExchange, type Exchange } from '@urql/core';
import manifest from '../gql/persisted-documents.json';

const texts: Readonly<Record<string, string>> = manifest;
const PREFIX = 'sha256:';

export interface PersistedQueryExtension {
  persistedQuery: { version: 1; sha256Hash: string };
}

/** The APQ extension for a document the client preset hashed, if it did. */
export function persistedQuery(document: unknown): PersistedQueryExtension | undefined {
  const id = (document as { __meta__?: { hash?: unknown } } | null)?.__meta__?.hash;
  if (typeof id !== 'string' || !(id in texts)) return undefined;
  return { persistedQuery: { version: 1, sha256Hash: id.slice(PREFIX.length) } };
}

/** The manifest's text for an APQ hash. */
export function persistedText(sha256Hash: unknown): string | undefined {
  return typeof sha256Hash === 'string' ? texts[`${PREFIX}${sha256Hash}`] : undefined;
}

/** Whether a server's errors say it does not know the hash (yet). */
export function isPersistedQueryNotFound(errors: unknown): boolean {
  return (
    Array.isArray(errors) &&
    errors.some(
      (error: { message?: unknown; extensions?: { code?: unknown } } | null) =>
        error?.extensions?.code === 'PERSISTED_QUERY_NOT_FOUND' ||
        error?.message === 'PersistedQueryNotFound',
    )
  );
}

/** urql: every operation of a hashed document goes out as its hash (fetchExchange then omits the text). */
export const persistedExchange: Exchange = mapExchange({
  onOperation(operation) {
    const extension = persistedQuery(operation.query);
    if (!extension) return operation;
    return makeOperation(
      operation.kind,
      { ...operation, extensions: { ...operation.extensions, ...extension } },
      operation.context,
    );
  },
});

/**
 * fetch for urql: a hash-only request the server does not know yet goes
 * again with the manifest's text (and the hash, so the server keeps it).
 */
export const persistedFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  if (typeof init?.body !== 'string' || !(response.headers.get('content-type') ?? '').includes('json')) {
    return response;
  }
  const sent = JSON.parse(init.body) as { query?: unknown; extensions?: Partial<PersistedQueryExtension> };
  const text = persistedText(sent.extensions?.persistedQuery?.sha256Hash);
  if (sent.query !== undefined || text === undefined) return response;
  const answer = (await response.clone().json()) as { errors?: unknown };
  if (!isPersistedQueryNotFound(answer.errors)) return response;
  return fetch(input, { ...init, body: JSON.stringify({ ...sent, query: text }) });
};
