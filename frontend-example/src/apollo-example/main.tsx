import { ApolloProvider } from '@apollo/client/react';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptTokenFromUrl } from '../shared/session';
import { createApolloClient } from './client';
import { TaskList } from './TaskList';
import './styles.css';

const token = adoptTokenFromUrl();
const root = document.getElementById('root');
if (!root) throw new Error('apollo-example/index.html has no #root element');

createRoot(root).render(
  <StrictMode>
    <main>
      <h1>Tasks through Apollo Client</h1>
      <p>
        <code>tasks</code> over HTTP, <code>taskUpdates</code> over graphql-ws, one normalized cache.{' '}
        <a href={import.meta.env.BASE_URL}>Dashboard</a>
      </p>
      {token ? (
        <ApolloProvider client={createApolloClient(token)}>
          <TaskList />
        </ApolloProvider>
      ) : (
        <p>
          Open this page with <code>?token=…</code>, or set one on the dashboard first.
        </p>
      )}
    </main>
  </StrictMode>,
);
