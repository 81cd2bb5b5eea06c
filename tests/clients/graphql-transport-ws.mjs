// Subscribe with the `graphql-ws` library (the graphql-transport-ws protocol), as
// Apollo Client's GraphQLWsLink and urql do. See common.mjs for the environment.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { config, deadline, emit } from "./common.mjs";

const { url, token, query, variables, count, timeout } = config();

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: token ? { authorization: `Bearer ${token}` } : {},
  retryAttempts: 0,
  lazy: true,
  on: {
    connected: () => emit("connected"),
    closed: (event) => emit("closed", { code: event?.code, reason: event?.reason }),
  },
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
        unsubscribe();
        client.dispose().then(() => process.exit(0));
      }
    },
    error: (error) => {
      // graphql-ws hands over the `error` message's GraphQL errors, or a CloseEvent.
      const payload = Array.isArray(error)
        ? error
        : { code: error?.code, reason: error?.reason, message: error?.message };
      emit("error", { payload });
      client.dispose().then(() => process.exit(1));
    },
    complete: () => {
      emit("complete");
      client.dispose().then(() => process.exit(0));
    },
  },
);
