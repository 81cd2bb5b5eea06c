import { CloseCode, createClient, type Client } from 'graphql-ws';

export type ConnectionPhase = 'connecting' | 'connected' | 'reconnecting';

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

function describeClose(event: unknown): string {
  if (!(event instanceof CloseEvent)) return 'network error';
  if (event.code === CloseCode.Forbidden) return 'token rejected (4403)';
  return `closed ${event.code}${event.reason ? ` ${event.reason}` : ''}`;
}

/**
 * A graphql-ws client that never gives up: the dashboard is a wall screen,
 * so after a drop it keeps retrying with a short capped backoff instead of
 * graphql-ws's default five attempts and growing waits.
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
    shouldRetry: () => true,
    retryWait: (retries) => {
      // Jittered (half to full wait), so screens that lost the same server do not all
      // come back in the same instant.
      const wait = Math.min(250 * 2 ** retries, RETRY_CAP_MS) * (0.5 + Math.random() / 2);
      return new Promise((resolve) => setTimeout(resolve, wait));
    },
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
          phase: wasConnected ? 'reconnecting' : 'connecting',
          lastClose: describeClose(event),
        }),
    },
  });
}
