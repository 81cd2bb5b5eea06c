// The dashboard's event feed, without the browser: the `graphql-ws` client set up as
// frontend-example/src/shared/socket.ts does (retry forever, jittered capped waits),
// and the subscription payload's `after` moved to the last event delivered, as
// frontend-example/src/dashboard/client.ts (rememberEventCursor) does: graphql-ws
// re-sends that same payload object on every reconnect, so the feed resumes where
// the dropped socket stopped. See common.mjs for the environment (MARK1_QUERY is
// the dashboard's EventStream document; MARK1_VARIABLES carries the first `after`).
//
// Lines: {"event": "connected"}, {"event": "next", "id": "7"},
// {"event": "closed", "code": 1012, "at": <epoch seconds>}, {"event": "error", ...}.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { config, deadline, emit } from "./common.mjs";

const { url, token, query, variables, timeout } = config();
const RETRY_CAP_MS = 3000;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: () => ({ authorization: `Bearer ${token}` }),
  lazy: false,
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: (retries) => {
    const wait = Math.min(250 * 2 ** retries, RETRY_CAP_MS) * (0.5 + Math.random() / 2);
    return new Promise((resolve) => setTimeout(resolve, wait));
  },
  on: {
    connected: () => emit("connected"),
    closed: (event) => emit("closed", { code: event?.code, at: Date.now() / 1000 }),
  },
});

deadline(timeout, () => client.dispose());

const payload = { query, variables: { ...variables } };
client.subscribe(payload, {
  next: (result) => {
    const id = result?.data?.events?.id;
    if (typeof id === "string" && "after" in payload.variables) payload.variables.after = id;
    if (result.errors) emit("error", { payload: result.errors });
    else emit("next", { id });
  },
  error: (error) => {
    emit("error", { payload: Array.isArray(error) ? error : { message: String(error) } });
    client.dispose().then(() => process.exit(1));
  },
  complete: () => {
    emit("complete");
    client.dispose().then(() => process.exit(0));
  },
});
