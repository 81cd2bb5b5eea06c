import { useQuery } from 'urql';
import { graphql } from '../../gql';
import { ErrorNote } from './ErrorNote';

const ViewerQuery = graphql(`
  query Viewer {
    me {
      subject
      roles
      tenant
    }
  }
`);

/** Who the token says we are. */
export function ViewerBadge() {
  const [{ data, error }] = useQuery({ query: ViewerQuery });
  if (error) return <ErrorNote error={error} />;
  if (!data) return null;
  const { subject, roles, tenant } = data.me;
  return (
    <span className="badge viewer" data-testid="viewer">
      {subject} · {roles.join(', ')} · tenant {tenant}
    </span>
  );
}
