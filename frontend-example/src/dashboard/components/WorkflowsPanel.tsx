import { useMemo } from 'react';
import { useQuery, useSubscription } from 'urql';
import { graphql } from '../../gql';
import { EventType, type WorkflowFieldsFragment } from '../../gql/graphql';
import { useConnection } from '../connection';
import { isAtLeastAsRecent, newestFirst, overlay, type ById } from '../live';
import { ErrorNote } from './ErrorNote';
import { Panel } from './Panel';
import { WorkflowCard } from './WorkflowCard';

graphql(`
  fragment WorkflowFields on Workflow {
    id
    name
    status
    progress
    currentStep
    createdAt
    updatedAt
    steps {
      index
      name
      capability
      status
      task {
        id
        progress
      }
    }
  }
`);

const WorkflowsQuery = graphql(`
  query Workflows {
    workflows(first: 20) {
      totalCount
      edges {
        node {
          ...WorkflowFields
        }
      }
    }
  }
`);

// New workflows appear through the event stream; each card then follows its own.
const WorkflowStartsSubscription = graphql(`
  subscription WorkflowStarts($filter: EventFilter) {
    events(filter: $filter) {
      id
      workflow {
        ...WorkflowFields
      }
    }
  }
`);

const STARTS = { types: [EventType.WorkflowStarted] };
const SHOWN = 10;

/** Recent workflows, each followed step by step while it runs. */
export function WorkflowsPanel() {
  const { reconnects } = useConnection();
  return <LiveWorkflows key={reconnects} />;
}

function LiveWorkflows() {
  const [{ data, error }] = useQuery({ query: WorkflowsQuery });
  const [{ data: started }] = useSubscription(
    { query: WorkflowStartsSubscription, variables: { filter: STARTS } },
    (previous: ById<WorkflowFieldsFragment> = {}, message) => {
      const workflow = message.events.workflow;
      return workflow ? { ...previous, [workflow.id]: workflow } : previous;
    },
  );

  const workflows = useMemo(() => {
    const snapshot = data?.workflows.edges.map((edge) => edge.node) ?? [];
    return overlay(snapshot, started, (update, current) =>
      isAtLeastAsRecent(update.updatedAt, current.updatedAt),
    ).sort(newestFirst((workflow) => workflow.createdAt));
  }, [data, started]);

  return (
    <Panel title="Workflows" count={workflows.length} className="workflows">
      {error && <ErrorNote error={error} />}
      {workflows.length === 0 && !error && <p className="empty">No workflows yet.</p>}
      <ul className="rows">
        {workflows.slice(0, SHOWN).map((workflow) => (
          <WorkflowCard key={workflow.id} initial={workflow} />
        ))}
      </ul>
    </Panel>
  );
}
