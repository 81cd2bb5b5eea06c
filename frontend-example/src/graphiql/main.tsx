import './workers';
import 'graphiql/style.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptTokenFromUrl } from '../shared/session';
import { createFetcher, GraphiQLPage } from './GraphiQLPage';
import { readSharedOperation } from './shareLink';

const token = adoptTokenFromUrl();
const fetcher = createFetcher(token);
const shared = readSharedOperation();

const root = document.getElementById('graphiql');
if (!root) throw new Error('graphiql.html has no #graphiql element');
createRoot(root).render(
  <StrictMode>
    <GraphiQLPage token={token} fetcher={fetcher} shared={shared} />
  </StrictMode>,
);
