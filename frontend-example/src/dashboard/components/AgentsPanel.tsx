import { useMemo } from 'react';
import { useQuery, useSubscription } from 'urql';
import { graphql } from '../../gql';
import type { AgentFieldsFragment } from '../../gql/graphql';
import { useConnection } from '../connection';
import { overlay, type ById } from '../live';
import { ErrorNote } from './ErrorNote';
import { Panel } from './Panel';
import { StatusPill } from './StatusPill';

graphql(`
  fragment AgentFields on Agent {
    id
    name
    status
    capabilities
    lastHeartbeatAt
    registeredAt
    currentTask {
      id
      title
    }
  }
`);

const AgentsQuery = graphql(`
  query Agents {
    agents(first: 100) {
      totalCount
      edges {
        node {
          ...AgentFields
        }
      }
    }
  }
`);

const AgentStatusSubscription = graphql(`
  subscription AgentStatus {
    agentStatus {
      ...AgentFields
    }
  }
`);

const ORDER = ['BUSY', 'ONLINE', 'UNHEALTHY', 'OFFLINE'];

/** Every agent with its live status. */
export function AgentsPanel() {
  const { reconnects } = useConnection();
  return <LiveAgents key={reconnects} />;
}

function LiveAgents() {
  const [{ data, error }] = useQuery({ query: AgentsQuery });
  const [{ data: updates }] = useSubscription(
    { query: AgentStatusSubscription },
    (previous: ById<AgentFieldsFragment> = {}, message) => ({
      ...previous,
      [message.agentStatus.id]: message.agentStatus,
    }),
  );

  const agents = useMemo(() => {
    const snapshot = data?.agents.edges.map((edge) => edge.node) ?? [];
    // Agents carry no change time; a status pushed after the query loaded is the newer one.
    return overlay(snapshot, updates).sort(
      (a, b) => ORDER.indexOf(a.status) - ORDER.indexOf(b.status) || a.name.localeCompare(b.name),
    );
  }, [data, updates]);

  return (
    <Panel title="Agents" count={agents.length} className="agents">
      {error && <ErrorNote error={error} />}
      {agents.length === 0 && !error && <p className="empty">No agents registered.</p>}
      <ul className="rows">
        {agents.map((agent) => (
          <AgentRow key={agent.id} agent={agent} />
        ))}
      </ul>
    </Panel>
  );
}

function AgentRow({ agent }: { agent: AgentFieldsFragment }) {
  return (
    <li className="row agent" data-agent-id={agent.id} data-status={agent.status}>
      <div className="row-head">
        <span className="title">{agent.name}</span>
        <StatusPill status={agent.status} />
      </div>
      <div className="row-meta">
        {agent.capabilities.length > 0 && <span>{agent.capabilities.join(', ')}</span>}
        {agent.currentTask && <span>working on {agent.currentTask.title}</span>}
        {agent.lastHeartbeatAt && <span>♥ {new Date(agent.lastHeartbeatAt).toLocaleTimeString()}</span>}
      </div>
    </li>
  );
}
