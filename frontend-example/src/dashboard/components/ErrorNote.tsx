import type { CombinedError } from 'urql';

/** A GraphQL or network error, with the server's `extensions.code` when there is one. */
export function ErrorNote({ error }: { error: CombinedError }) {
  const codes = error.graphQLErrors
    .map((graphQLError) => graphQLError.extensions?.['code'])
    .filter((code): code is string => typeof code === 'string');
  return (
    <span className="error" role="alert">
      {codes.length > 0 && <strong>{codes.join(', ')}: </strong>}
      {error.message.replace(/^\[(GraphQL|Network)\] /, '')}
    </span>
  );
}
