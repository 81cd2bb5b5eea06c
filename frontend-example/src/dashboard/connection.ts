import { createContext, useContext, useSyncExternalStore } from 'react';
import type { ConnectionMonitor, ConnectionStatus } from '../shared/socket';

export const ConnectionContext = createContext<ConnectionMonitor | null>(null);

/** The live socket's state; re-renders on every change. */
export function useConnection(): ConnectionStatus {
  const monitor = useContext(ConnectionContext);
  if (!monitor) throw new Error('useConnection() needs a <ConnectionContext.Provider> above it');
  return useSyncExternalStore(monitor.subscribe, monitor.getSnapshot);
}
