// The graphql-http audit (GraphQL over HTTP spec) against MARK1_URL, authenticated
// with MARK1_TOKEN. Prints one JSON line per non-ok result, then a summary line.
import { auditServer } from 'graphql-http';

const url = process.env.MARK1_URL;
const token = process.env.MARK1_TOKEN;
const results = await auditServer({
  url,
  fetchFn: (input, init = {}) =>
    fetch(input, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${token}` } }),
});
for (const r of results) {
  if (r.status !== 'ok') console.log(JSON.stringify({ status: r.status, id: r.id, name: r.name, reason: r.reason }));
}
console.log(JSON.stringify({ total: results.length, ok: results.filter((r) => r.status === 'ok').length }));
