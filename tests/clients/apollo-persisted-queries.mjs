// Apollo Client's own persisted-query link (@apollo/client/link/persisted-queries)
// against MARK1_URL, authenticated with MARK1_TOKEN. MARK1_SUFFIX makes the documents
// new to the server, so their first use really misses.
//
// Prints one JSON line per HTTP request the link makes ({"request": …}) and per
// operation result ({"result": …}), in order; tests/http/test_persisted_queries.py
// asserts the APQ round trip on them.
import { createHash } from 'node:crypto';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const url = process.env.MARK1_URL;
const token = process.env.MARK1_TOKEN;
const suffix = process.env.MARK1_SUFFIX;
if (!url || !token || !suffix) {
  console.error('MARK1_URL, MARK1_TOKEN and MARK1_SUFFIX are required');
  process.exit(2);
}

const emit = (line) => process.stdout.write(JSON.stringify(line) + '\n');

/** fetch, reporting what each request carried and what the server answered. */
async function recordingFetch(input, init = {}) {
  const target = new URL(String(input));
  const sent = init.method === 'GET' ? Object.fromEntries(target.searchParams) : JSON.parse(init.body);
  const extensions = typeof sent.extensions === 'string' ? JSON.parse(sent.extensions) : sent.extensions;
  const response = await fetch(input, init);
  const body = await response.clone().json();
  emit({
    request: {
      method: init.method ?? 'GET',
      query: typeof sent.query === 'string',
      hash: extensions?.persistedQuery?.sha256Hash ?? null,
      status: response.status,
      code: body.errors?.[0]?.extensions?.code ?? null,
    },
  });
  return response;
}

function client({ useGETForHashedQueries }) {
  const persisted = new PersistedQueryLink({
    sha256: (text) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries,
  });
  const http = new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch });
  return new ApolloClient({ link: ApolloLink.from([persisted, http]), cache: new InMemoryCache() });
}

const ME = gql(`query Me${suffix} { me { subject } }`);
const CREATE = gql(`mutation Create${suffix}($title: String!) { createTask(input: {title: $title}) { id title } }`);

// A first client: every document is new to the server.
const first = client({ useGETForHashedQueries: false });
const me = await first.query({ query: ME, fetchPolicy: 'network-only' });
emit({ result: me.data });
const created = await first.mutate({ mutation: CREATE, variables: { title: `apq ${suffix}` } });
emit({ result: created.data });
const again = await first.mutate({ mutation: CREATE, variables: { title: `apq again ${suffix}` } });
emit({ result: again.data });

// A second client, as another browser would be: the server knows the hash already,
// so the query goes as a GET with the hash alone.
const second = client({ useGETForHashedQueries: true });
const meAgain = await second.query({ query: ME, fetchPolicy: 'network-only' });
emit({ result: meAgain.data });
