import type { Client } from '@urql/core';
import type { Client as SocketClient } from 'graphql-ws';
import { useEffect, useState } from 'react';
import { bearer, resolveEndpoints } from '../shared/session';
import { ConnectionMonitor, createSocket } from '../shared/socket';
import { createUrqlClient } from './client';

/** Everything one token's view of the API needs, closed together. */
export interface LiveSession {
  urql: Client;
  socket: SocketClient;
  monitor: ConnectionMonitor;
}

function openSession(token: string): LiveSession {
  const endpoints = resolveEndpoints();
  const monitor = new ConnectionMonitor();
  const socket = createSocket(endpoints.ws, () => ({ authorization: bearer(token) }), monitor);
  return { urql: createUrqlClient(endpoints, token, socket), socket, monitor };
}

/** Opens a session for `token`, and closes it when the token changes or the page unmounts. */
export function useLiveSession(token: string | null): LiveSession | null {
  const [session, setSession] = useState<LiveSession | null>(null);
  useEffect(() => {
    if (!token) {
      setSession(null);
      return;
    }
    const opened = openSession(token);
    setSession(opened);
    return () => {
      void opened.socket.dispose();
    };
  }, [token]);
  return session;
}
