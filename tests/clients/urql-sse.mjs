// urql (@urql/core) with its SSE recipe: subscriptionExchange forwarding each
// subscription to a graphql-sse client. See common.mjs for the environment;
// MARK1_SINGLE=1 puts the graphql-sse client in single-connection mode.
import { Client, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient as createSSEClient } from "graphql-sse";
import { onEnd, pipe, subscribe } from "wonka";

import { config, deadline, emit } from "./common.mjs";

const { url, token, query, variables, count, timeout } = config();
const headers = token ? { authorization: `Bearer ${token}` } : {};

const sseClient = createSSEClient({
  url,
  headers,
  singleConnection: process.env.MARK1_SINGLE === "1",
  retryAttempts: 0,
});

const client = new Client({
  url,
  fetchOptions: { headers },
  exchanges: [
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || "" };
        return {
          subscribe(sink) {
            const unsubscribe = sseClient.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

deadline(timeout, () => sseClient.dispose());

let received = 0;
const { unsubscribe } = pipe(
  client.subscription(query, variables),
  onEnd(() => {
    emit("complete");
    sseClient.dispose();
    process.exit(0);
  }),
  subscribe((result) => {
    if (result.error) {
      emit("error", {
        payload: result.error.graphQLErrors.length
          ? result.error.graphQLErrors.map((e) => ({ message: e.message, extensions: e.extensions }))
          : { message: result.error.message },
      });
      sseClient.dispose();
      process.exit(1);
    }
    // When a subscription completes, urql hands its last result over again, marked
    // hasNext: false; it is not a new result.
    if (result.hasNext === false) return;
    emit("next", { payload: { data: result.data } });
    received += 1;
    if (count && received >= count) {
      unsubscribe();
      sseClient.dispose();
      process.exit(0);
    }
  }),
);
