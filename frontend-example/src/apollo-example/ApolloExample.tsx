import { ApolloProvider } from '@apollo/client/react';
import { useMemo, useState, type FormEvent } from 'react';
import { saveToken } from '../shared/session';
import { createApolloClient } from './client';
import { TaskList } from './TaskList';
import type { SubscriptionTransport } from './transport';

/** The task list for a token; when the server refuses the token, a form for a new one. */
export function ApolloExample({
  initialToken,
  transport,
}: {
  initialToken: string | null;
  transport: SubscriptionTransport;
}) {
  const [token, setToken] = useState(initialToken);
  const [rejected, setRejected] = useState(false);
  const client = useMemo(
    () => (token ? createApolloClient(token, transport, () => setRejected(true)) : null),
    [token, transport],
  );

  const adopt = (next: string) => {
    saveToken(next);
    setRejected(false);
    setToken(next);
  };

  if (!client) {
    return (
      <>
        <p>
          Paste a token, open this page with <code>?token=…</code>, or set one on the dashboard first.
        </p>
        <TokenForm onSubmit={adopt} />
      </>
    );
  }
  return (
    <>
      {rejected && (
        <div className="token-needed" role="alert" data-testid="token-needed">
          <p>
            The server refused this token: it has expired or is not valid here. Live updates are paused until
            you paste a new one.
          </p>
          <TokenForm onSubmit={adopt} />
        </div>
      )}
      <ApolloProvider client={client}>
        <TaskList />
      </ApolloProvider>
    </>
  );
}

function TokenForm({ onSubmit }: { onSubmit: (token: string) => void }) {
  const [draft, setDraft] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const next = draft.trim().replace(/^Bearer\s+/i, '');
    if (next) onSubmit(next);
    setDraft('');
  };
  return (
    <form className="token-form" onSubmit={submit}>
      <input
        type="password"
        aria-label="API token"
        placeholder="paste a JWT"
        value={draft}
        onChange={(event) => setDraft(event.target.value)}
        autoComplete="off"
        autoFocus
      />
      <button type="submit" disabled={!draft.trim()}>
        Use token
      </button>
    </form>
  );
}
