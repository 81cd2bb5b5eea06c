// Apollo Client's HttpLink, which runs subscriptions over multipart HTTP by itself
// (Accept: multipart/mixed;boundary=graphql;subscriptionSpec=1.0). See common.mjs
// for the environment; MARK1_URL is the http:// endpoint.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";

import { config, deadline, emit } from "./common.mjs";

const { url, token, query, variables, count, timeout } = config();

const client = new ApolloClient({
  link: new HttpLink({
    uri: url,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  }),
  cache: new InMemoryCache(),
});

deadline(timeout, () => client.stop());

function describe(error) {
  // CombinedGraphQLErrors (errors in a payload) and CombinedProtocolErrors (a fatal
  // {"payload": null, "errors": [...]}) both carry `errors`; a ServerError its status.
  return {
    kind: error?.name,
    status: error?.statusCode,
    errors: (error?.errors ?? []).map((e) => ({ message: e.message, extensions: e.extensions })),
    message: error?.message,
  };
}

// Apollo's cache adds __typename to every selection; the tests compare the fields they asked for.
function withoutTypenames(data) {
  return JSON.parse(JSON.stringify(data, (key, value) => (key === "__typename" ? undefined : value)));
}

let received = 0;
const subscription = client.subscribe({ query: gql(query), variables }).subscribe({
  next: (result) => {
    if (result.error) {
      emit("error", { payload: describe(result.error) });
      client.stop();
      process.exit(1);
    }
    emit("next", { payload: { data: withoutTypenames(result.data) } });
    received += 1;
    if (count && received >= count) {
      subscription.unsubscribe();
      client.stop();
      process.exit(0);
    }
  },
  error: (error) => {
    emit("error", { payload: describe(error) });
    client.stop();
    process.exit(1);
  },
  complete: () => {
    emit("complete");
    client.stop();
    process.exit(0);
  },
});
