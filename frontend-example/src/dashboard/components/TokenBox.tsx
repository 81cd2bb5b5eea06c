import { useState, type FormEvent } from 'react';
import { TOKEN_INPUT_ID } from './TokenNeeded';

interface Props {
  token: string | null;
  onChange: (token: string | null) => void;
}

/** Shows whether a token is set; lets one paste a new one or forget it. */
export function TokenBox({ token, onChange }: Props) {
  const [draft, setDraft] = useState('');

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const next = draft.trim().replace(/^Bearer\s+/i, '');
    if (next) onChange(next);
    setDraft('');
  };

  return (
    <form className="token-box" onSubmit={submit}>
      <input
        id={TOKEN_INPUT_ID}
        type="password"
        aria-label="API token"
        placeholder={token ? 'token set — paste to replace' : 'paste a JWT'}
        value={draft}
        onChange={(event) => setDraft(event.target.value)}
        autoComplete="off"
      />
      <button type="submit" disabled={!draft.trim()}>
        Use token
      </button>
      {token && (
        <button type="button" onClick={() => onChange(null)}>
          Forget
        </button>
      )}
    </form>
  );
}
