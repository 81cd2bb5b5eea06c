// Subscribe with the `graphql-sse` library's own client (GraphQL over SSE), in
// distinct-connections mode, or in single-connection mode when MARK1_SINGLE=1.
// See common.mjs for the environment; MARK1_URL is the http:// endpoint.
import { createClient } from "graphql-sse";

import { config, deadline, emit } from "./common.mjs";

const { url, token, query, variables, count, timeout } = config();
const singleConnection = process.env.MARK1_SINGLE === "1";

const client = createClient({
  url,
  singleConnection,
  headers: token ? { authorization: `Bearer ${token}` } : {},
  retryAttempts: 0,
  on: { connected: () => emit("connected") },
});

deadline(timeout, () => client.dispose());

let received = 0;
const unsubscribe = client.subscribe(
  { query, variables },
  {
    next: (result) => {
      emit("next", { payload: result });
      received += 1;
      if (count && received >= count) {
        // The client then stops the operation (single-connection mode: DELETE, which
        // must answer 200) and calls `complete`.
        unsubscribe();
      }
    },
    error: (error) => {
      // A NetworkError carries the refused response; anything else its message.
      const response = error?.response;
      emit("error", {
        payload: { status: response?.status, message: String(error?.message ?? error) },
      });
      client.dispose();
      process.exit(1);
    },
    complete: () => {
      emit("complete");
      client.dispose();
      process.exit(0);
    },
  },
);
