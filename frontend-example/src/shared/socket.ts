import { CloseCode, createClient, type Client } from 'graphql-ws';

/** `unauthorized`: the server refused the token (4403: invalid or expired); no more retries. */
export type ConnectionPhase = 'connecting' | 'connected' | 'reconnecting' | 'unauthorized';

export interface ConnectionStatus {
  phase: ConnectionPhase;
  /** How many times the socket came back after a drop. */
  reconnects: number;
  /** Why the last socket closed, when it did. */
  lastClose: string | null;
}

type Listener = () => void;

/** The socket's state as an external store for `useSyncExternalStore`. */
export class ConnectionMonitor {
  #status: ConnectionStatus = { phase: 'connecting', reconnects: 0, lastClose: null };
  #listeners = new Set<Listener>();

  subscribe = (listener: Listener): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  getSnapshot = (): ConnectionStatus => this.#status;

  update(change: Partial<ConnectionStatus>): void {
    this.#status = { ...this.#status, ...change };
    for (const listener of this.#listeners) listener();
  }
}

const RETRY_CAP_MS = 3000;

/** The server closed the socket because of its token: retrying with it cannot help. */
export function isTokenRejected(event: unknown): boolean {
  return event instanceof CloseEvent && event.code === CloseCode.Forbidden;
}

/**
 * The wait before retry number `retries` (0 for the first): exponential up to
 * a few seconds, jittered (half to full wait), so clients that lost the same
 * server do not all come back in the same instant.
 */
export function jitteredRetryDelay(retries: number): number {
  return Math.min(250 * 2 ** retries, RETRY_CAP_MS) * (0.5 + Math.random() / 2);
}

/** graphql-ws `retryWait`: waits `jitteredRetryDelay(retries)`. */
export function jitteredRetryWait(retries: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, jitteredRetryDelay(retries)));
}

function describeClose(event: unknown): string {
  if (!(event instanceof CloseEvent)) return 'network error';
  if (isTokenRejected(event)) return 'token rejected (4403)';
  return `closed ${event.code}${event.reason ? ` ${event.reason}` : ''}`;
}

/**
 * A graphql-ws client that never gives up on the network: the dashboard is a
 * wall screen, so after a drop it keeps retrying with a short capped backoff
 * instead of graphql-ws's default five attempts and growing waits. It stops
 * only when the server refuses the token (4403, also sent when the token
 * expires): the monitor then says `unauthorized` and the page asks for a new one.
 */
export function createSocket(
  url: string,
  connectionParams: () => Record<string, unknown>,
  monitor: ConnectionMonitor,
): Client {
  let wasConnected = false;
  return createClient({
    url,
    lazy: false, // connect up front, so the badge tells the truth before any operation
    connectionParams,
    retryAttempts: Infinity,
    shouldRetry: (event) => !isTokenRejected(event),
    retryWait: jitteredRetryWait,
    // graphql-ws would log the final close to the console; the badge shows it instead.
    onNonLazyError: () => {},
    keepAlive: 10_000, // a ping every 10 s notices a half-open socket
    on: {
      connecting: () => monitor.update({ phase: wasConnected ? 'reconnecting' : 'connecting' }),
      connected: () => {
        const { reconnects } = monitor.getSnapshot();
        monitor.update({ phase: 'connected', reconnects: wasConnected ? reconnects + 1 : reconnects });
        wasConnected = true;
      },
      closed: (event) =>
        monitor.update({
          phase: isTokenRejected(event) ? 'unauthorized' : wasConnected ? 'reconnecting' : 'connecting',
          lastClose: describeClose(event),
        }),
    },
  });
}
