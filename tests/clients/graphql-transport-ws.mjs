// Subscribe with the `graphql-ws` library (the graphql-transport-ws protocol), as
// Apollo Client's GraphQLWsLink and urql do. See common.mjs for the environment.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { config, emit, follow } from "./common.mjs";

const settings = config();

const client = createClient({
  url: settings.url,
  webSocketImpl: WebSocket,
  connectionParams: settings.token ? { authorization: `Bearer ${settings.token}` } : {},
  retryAttempts: 0,
  lazy: true,
  on: {
    connected: () => emit("connected"),
    closed: (event) => emit("closed", { code: event?.code, reason: event?.reason }),
  },
});

follow(client, settings, {
  // graphql-ws hands over the `error` message's GraphQL errors, or a CloseEvent.
  describe: (error) =>
    Array.isArray(error)
      ? error
      : { code: error?.code, reason: error?.reason, message: error?.message },
});
