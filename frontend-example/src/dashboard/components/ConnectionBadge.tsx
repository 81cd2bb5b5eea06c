import { useConnection } from '../connection';

const LABELS = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  unauthorized: 'token rejected',
} as const;

/** The WebSocket's state: connecting, connected, reconnecting (with why it dropped) or refused. */
export function ConnectionBadge() {
  const { phase, lastClose, reconnects } = useConnection();
  return (
    <span className={`badge connection ${phase}`} data-testid="connection" data-state={phase} role="status">
      <span className="dot" aria-hidden />
      {LABELS[phase]}
      {phase !== 'connected' && lastClose && <small> — {lastClose}</small>}
      {phase === 'connected' && reconnects > 0 && <small> (reconnected {reconnects}×)</small>}
    </span>
  );
}
