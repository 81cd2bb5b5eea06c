import { useFragment, useQuery, useSubscription } from '@apollo/client/react';
import { graphql } from '../gql';
import type { TasksForApolloQuery } from '../gql/graphql';

const TaskItemFragment = graphql(`
  fragment TaskItem on Task {
    id
    title
    status
    progress
    updatedAt
  }
`);

const TasksQuery = graphql(`
  query TasksForApollo {
    tasks(first: 100) {
      totalCount
      edges {
        node {
          ...TaskItem
        }
      }
    }
  }
`);

const TaskUpdatesSubscription = graphql(`
  subscription TaskUpdatesForApollo {
    taskUpdates {
      ...TaskItem
    }
  }
`);

type TaskEdge = TasksForApolloQuery['tasks']['edges'][number];

/**
 * The `tasks` query gives the list; `taskUpdates` needs no handler for tasks
 * already in it, because Apollo writes each result into the normalized cache
 * under `Task:<id>`. Only a task the list has not seen is added by hand.
 */
export function TaskList() {
  const { data, error, loading } = useQuery(TasksQuery);
  useSubscription(TaskUpdatesSubscription, {
    onData: ({ client, data: message }) => {
      const task = message.data?.taskUpdates;
      if (!task) return;
      client.cache.updateQuery({ query: TasksQuery }, (current) => {
        if (!current || current.tasks.edges.some((edge) => edge.node.id === task.id)) return current;
        const edge: TaskEdge = { __typename: 'TaskEdge', node: task };
        return {
          ...current,
          // `tasks` is newest first.
          tasks: {
            ...current.tasks,
            totalCount: current.tasks.totalCount + 1,
            edges: [edge, ...current.tasks.edges],
          },
        };
      });
    },
  });

  if (error) return <p className="error">{error.message}</p>;
  if (loading || !data) return <p>Loading…</p>;
  return (
    <table>
      <thead>
        <tr>
          <th>cache key</th>
          <th>title</th>
          <th>status</th>
          <th>progress</th>
        </tr>
      </thead>
      <tbody>
        {data.tasks.edges.map(({ node }) => (
          <TaskItemRow key={node.id} id={node.id} />
        ))}
      </tbody>
    </table>
  );
}

/** Reads the task straight from the normalized cache, not from the list query's result. */
function TaskItemRow({ id }: { id: string }) {
  const { data: task, complete } = useFragment({
    fragment: TaskItemFragment,
    from: { __typename: 'Task', id },
  });
  if (!complete) return null;
  return (
    <tr data-task-id={task.id} data-status={task.status}>
      <td>
        <code>Task:{task.id}</code>
      </td>
      <td>{task.title}</td>
      <td className="status">{task.status}</td>
      <td>{Math.round(task.progress * 100)}%</td>
    </tr>
  );
}
