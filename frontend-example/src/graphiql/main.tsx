import './workers';
import 'graphiql/style.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptTokenFromUrl } from '../shared/session';
import { createFetcher, GraphiQLPage } from './GraphiQLPage';

const token = adoptTokenFromUrl();
const fetcher = createFetcher(token);
// `#query=` rather than `?query=`: on GET /graphql a query parameter makes
// the request a GraphQL GET that the server executes instead of serving this page.
const query = new URLSearchParams(window.location.hash.slice(1)).get('query');

const root = document.getElementById('graphiql');
if (!root) throw new Error('graphiql.html has no #graphiql element');
createRoot(root).render(
  <StrictMode>
    <GraphiQLPage token={token} fetcher={fetcher} query={query} />
  </StrictMode>,
);
