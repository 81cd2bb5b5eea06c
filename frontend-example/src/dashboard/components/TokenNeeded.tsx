import { useEffect } from 'react';
import { useConnection } from '../connection';

export const TOKEN_INPUT_ID = 'api-token';

/**
 * When the server refuses the token (4403: expired or invalid) the socket stops
 * retrying; this says so and puts the cursor in the token box for a new one.
 */
export function TokenNeeded() {
  const { phase } = useConnection();
  const needed = phase === 'unauthorized';
  useEffect(() => {
    if (needed) document.getElementById(TOKEN_INPUT_ID)?.focus();
  }, [needed]);
  if (!needed) return null;
  return (
    <p className="token-needed" role="alert" data-testid="token-needed">
      The server refused this token: it has expired or is not valid here. Live updates are paused until you
      paste a new one above (mint one with <code>mark1 token</code>).
    </p>
  );
}
