import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptTokenFromUrl } from '../shared/session';
import { ApolloExample } from './ApolloExample';
import './styles.css';

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
      <ApolloExample initialToken={adoptTokenFromUrl()} />
    </main>
  </StrictMode>,
);
