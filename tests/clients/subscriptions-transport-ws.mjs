// Subscribe with `subscriptions-transport-ws` (the legacy graphql-ws protocol), as
// Apollo Client 2's WebSocketLink does. See common.mjs for the environment.
import stws from "subscriptions-transport-ws";
import WebSocket from "ws";

import { config, deadline, emit } from "./common.mjs";

const { SubscriptionClient } = stws;
const { url, token, query, variables, count, timeout } = config();

const client = new SubscriptionClient(
  url,
  {
    reconnect: false,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    connectionCallback: (error) => {
      if (error) {
        emit("error", { payload: error });
        process.exit(1);
      }
    },
  },
  WebSocket,
);
client.onConnected(() => emit("connected"));
client.onDisconnected(() => emit("closed"));

deadline(timeout, () => client.close());

let received = 0;
const subscription = client.request({ query, variables }).subscribe({
  next: (result) => {
    emit("next", { payload: result });
    received += 1;
    if (count && received >= count) {
      subscription.unsubscribe();
      client.close();
      process.exit(0);
    }
  },
  error: (error) => {
    // A GraphQL error object as the server sent it, or an Error of the client's own.
    emit("error", { payload: error instanceof Error ? { message: error.message } : error });
    client.close();
    process.exit(1);
  },
  complete: () => {
    emit("complete");
    client.close();
    process.exit(0);
  },
});
