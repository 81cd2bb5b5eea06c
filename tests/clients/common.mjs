// Shared by the client scripts: configuration from the environment, JSON lines out.
//
//   MARK1_WS_URL     ws://host:port/graphql (WebSocket clients)
//   MARK1_URL        http://host:port/graphql (HTTP stream clients: graphql-sse, urql, Apollo)
//   MARK1_TOKEN      a JWT (sent as connection params: {authorization: "Bearer <token>"},
//                    or as the Authorization header over HTTP)
//   MARK1_QUERY      the subscription document
//   MARK1_VARIABLES  JSON object (optional)
//   MARK1_COUNT      exit after this many results (optional; default: run until complete)
//   MARK1_TIMEOUT    give up after this many seconds (default 20)
//
// Every line on stdout is one JSON object: {"event": "connected" | "next" | "error" |
// "complete" | "closed" | "timeout", ...}.

export function config() {
  const url = process.env.MARK1_WS_URL ?? process.env.MARK1_URL;
  const query = process.env.MARK1_QUERY;
  if (!url || !query) {
    console.error("MARK1_WS_URL (or MARK1_URL) and MARK1_QUERY are required");
    process.exit(2);
  }
  return {
    url,
    query,
    token: process.env.MARK1_TOKEN ?? "",
    variables: JSON.parse(process.env.MARK1_VARIABLES ?? "{}"),
    count: Number(process.env.MARK1_COUNT ?? "0"),
    timeout: Number(process.env.MARK1_TIMEOUT ?? "20"),
  };
}

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

export function deadline(seconds, onTimeout) {
  const timer = setTimeout(() => {
    emit("timeout");
    onTimeout();
    process.exit(3);
  }, seconds * 1000);
  timer.unref();
}

// Runs one subscription on a graphql-ws or graphql-sse client (both take
// `subscribe(request, sink)` and return an unsubscribe function), emitting every
// result. After `count` results (0: no limit) it unsubscribes, then exits 0 at once;
// or, with `completesOnUnsubscribe`, when the client calls `complete`. An error is
// emitted with the payload `describe(error)` gives, then it exits 1; `complete`, 0.
// The client is disposed before every exit, and on the deadline.
export function follow(
  client,
  { query, variables, count, timeout },
  { describe, completesOnUnsubscribe = false },
) {
  const end = (code) => Promise.resolve(client.dispose()).then(() => process.exit(code));
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
          if (!completesOnUnsubscribe) end(0);
        }
      },
      error: (error) => {
        emit("error", { payload: describe(error) });
        end(1);
      },
      complete: () => {
        emit("complete");
        end(0);
      },
    },
  );
}
