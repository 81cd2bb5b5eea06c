import { useState } from 'react';
import { Provider } from 'urql';
import { adoptTokenFromUrl, saveToken } from '../shared/session';
import { AgentsPanel } from './components/AgentsPanel';
import { ConnectionBadge } from './components/ConnectionBadge';
import { EventFeed } from './components/EventFeed';
import { TasksPanel } from './components/TasksPanel';
import { TokenBox } from './components/TokenBox';
import { TokenNeeded } from './components/TokenNeeded';
import { ViewerBadge } from './components/ViewerBadge';
import { WorkflowsPanel } from './components/WorkflowsPanel';
import { ConnectionContext } from './connection';
import { useLiveSession, type LiveSession } from './session';

export function App() {
  const [token, setToken] = useState(adoptTokenFromUrl);
  const session = useLiveSession(token);

  const changeToken = (next: string | null) => {
    saveToken(next);
    setToken(next);
  };

  return (
    <div className="app">
      <header className="topbar">
        <h1>Mark-1 Realtime</h1>
        <nav>
          <a href={`${import.meta.env.BASE_URL}graphiql.html`}>GraphiQL</a>
          <a href={`${import.meta.env.BASE_URL}apollo-example/`}>Apollo example</a>
        </nav>
        <TokenBox token={token} onChange={changeToken} />
      </header>
      {session ? <Dashboard session={session} /> : <NoToken />}
    </div>
  );
}

function Dashboard({ session }: { session: LiveSession }) {
  return (
    <Provider value={session.urql}>
      <ConnectionContext.Provider value={session.monitor}>
        <div className="statusbar">
          <ConnectionBadge />
          <ViewerBadge />
        </div>
        <TokenNeeded />
        <main className="grid">
          <AgentsPanel />
          <TasksPanel />
          <WorkflowsPanel />
          <EventFeed />
        </main>
      </ConnectionContext.Provider>
    </Provider>
  );
}

function NoToken() {
  return (
    <p className="hint">
      Paste a token above, or open this page with <code>?token=…</code>. Mint one with{' '}
      <code>mark1 token --sub you --role VIEWER</code>.
    </p>
  );
}
