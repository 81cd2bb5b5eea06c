// Subscribe with the `graphql-sse` library's own client (GraphQL over SSE), in
// distinct-connections mode, or in single-connection mode when MARK1_SINGLE=1.
// See common.mjs for the environment; MARK1_URL is the http:// endpoint.
import { createClient } from "graphql-sse";

import { config, emit, follow } from "./common.mjs";

const settings = config();

const client = createClient({
  url: settings.url,
  singleConnection: process.env.MARK1_SINGLE === "1",
  headers: settings.token ? { authorization: `Bearer ${settings.token}` } : {},
  retryAttempts: 0,
  on: { connected: () => emit("connected") },
});

follow(client, settings, {
  // A NetworkError carries the refused response; anything else its message.
  describe: (error) => ({
    status: error?.response?.status,
    message: String(error?.message ?? error),
  }),
  // After `count` results the client stops the operation (single-connection mode:
  // DELETE, which must answer 200) and calls `complete`.
  completesOnUnsubscribe: true,
});
