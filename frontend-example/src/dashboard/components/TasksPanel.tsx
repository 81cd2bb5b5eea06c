import { useMemo } from 'react';
import { useQuery, useSubscription } from 'urql';
import { graphql } from '../../gql';
import type { TaskFieldsFragment } from '../../gql/graphql';
import { useConnection } from '../connection';
import { isAtLeastAsRecent, newestFirst, overlay, type ById } from '../live';
import { ErrorNote } from './ErrorNote';
import { Panel } from './Panel';
import { ProgressBar } from './ProgressBar';
import { StatusPill } from './StatusPill';

graphql(`
  fragment TaskFields on Task {
    id
    title
    status
    progress
    message
    priority
    capability
    attempts
    maxAttempts
    error
    createdAt
    updatedAt
    agent {
      id
      name
    }
  }
`);

const ActiveTasksQuery = graphql(`
  query ActiveTasks {
    tasks(status: [PENDING, RUNNING], first: 100) {
      totalCount
      edges {
        node {
          ...TaskFields
        }
      }
    }
  }
`);

const TaskUpdatesSubscription = graphql(`
  subscription TaskUpdates {
    taskUpdates {
      ...TaskFields
    }
  }
`);

const SHOWN = 50;

/** Active tasks at load, then every task that changes while we watch. */
export function TasksPanel() {
  // After a reconnect, start over: the query catches up on what changed while
  // the socket was down, and a fresh subscription takes it from there.
  const { reconnects } = useConnection();
  return <LiveTasks key={reconnects} />;
}

function LiveTasks() {
  const [{ data, error }] = useQuery({ query: ActiveTasksQuery });
  const [{ data: updates }] = useSubscription(
    { query: TaskUpdatesSubscription },
    (previous: ById<TaskFieldsFragment> = {}, message) => ({
      ...previous,
      [message.taskUpdates.id]: message.taskUpdates,
    }),
  );

  const tasks = useMemo(() => {
    const snapshot = data?.tasks.edges.map((edge) => edge.node) ?? [];
    return overlay(snapshot, updates, (update, current) =>
      isAtLeastAsRecent(update.updatedAt, current.updatedAt),
    ).sort(newestFirst((task) => task.createdAt));
  }, [data, updates]);

  return (
    <Panel title="Tasks" count={tasks.length} className="tasks">
      {error && <ErrorNote error={error} />}
      {tasks.length === 0 && !error && <p className="empty">No active tasks.</p>}
      <ul className="rows">
        {tasks.slice(0, SHOWN).map((task) => (
          <TaskRow key={task.id} task={task} />
        ))}
      </ul>
    </Panel>
  );
}

/** UUIDs are long; their first block is enough to tell tasks apart on screen. */
function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 8) : id;
}

function TaskRow({ task }: { task: TaskFieldsFragment }) {
  return (
    <li className="row task" data-task-id={task.id} data-status={task.status}>
      <div className="row-head">
        <span className="title">{task.title}</span>
        <StatusPill status={task.status} />
      </div>
      <ProgressBar value={task.progress} label={`progress of ${task.title}`} />
      <div className="row-meta">
        <span title={task.id}>#{shortId(task.id)}</span>
        {task.capability && <span>needs {task.capability}</span>}
        {task.agent && <span>on {task.agent.name}</span>}
        <span>
          attempt {task.attempts}/{task.maxAttempts}
        </span>
        {task.message && <span className="message">{task.message}</span>}
        {task.error && <span className="error">{task.error}</span>}
      </div>
    </li>
  );
}
