import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptTokenFromUrl } from '../shared/session';
import { ApolloExample } from './ApolloExample';
import { resolveTransport, TRANSPORT_LABELS, transportHref, type SubscriptionTransport } from './transport';
import './styles.css';

const root = document.getElementById('root');
if (!root) throw new Error('apollo-example/index.html has no #root element');

// First, so the token has left the address before the link to the other transport copies it.
const initialToken = adoptTokenFromUrl();
const transport = resolveTransport();
const other: SubscriptionTransport = transport === 'multipart' ? 'graphql-ws' : 'multipart';

createRoot(root).render(
  <StrictMode>
    <main>
      <h1>Tasks through Apollo Client</h1>
      <p>
        <code>tasks</code> over HTTP, <code>taskUpdates</code> over{' '}
        <strong data-testid="transport" data-transport={transport}>
          {TRANSPORT_LABELS[transport]}
        </strong>
        , one normalized cache. <a href={transportHref(other)}>Use {TRANSPORT_LABELS[other]}</a> ·{' '}
        <a href={import.meta.env.BASE_URL}>Dashboard</a>
      </p>
      <ApolloExample initialToken={initialToken} transport={transport} />
    </main>
  </StrictMode>,
);
