import { useSubscription } from 'urql';
import { graphql } from '../../gql';
import type { EventFieldsFragment, EventType } from '../../gql/graphql';
import { ErrorNote } from './ErrorNote';

graphql(`
  fragment EventFields on Event {
    id
    type
    occurredAt
    taskId
    agentId
    workflowId
    task {
      id
      title
      status
      progress
    }
    agent {
      id
      name
      status
    }
    workflow {
      id
      name
      status
      progress
    }
  }
`);

const EventStreamSubscription = graphql(`
  subscription EventStream($filter: EventFilter, $after: ID) {
    events(filter: $filter, after: $after) {
      ...EventFields
    }
  }
`);

const KEPT = 200;

interface Props {
  types: EventType[];
  /** Replay history after this event id, then go live. */
  after: string;
}

/** Newest first, without duplicates, at most `KEPT` events. */
function prepend(feed: EventFieldsFragment[] = [], event: EventFieldsFragment): EventFieldsFragment[] {
  if (feed.some((seen) => seen.id === event.id)) return feed;
  return [event, ...feed].slice(0, KEPT);
}

export function EventList({ types, after }: Props) {
  const [{ data: feed, error }] = useSubscription(
    {
      query: EventStreamSubscription,
      variables: { filter: types.length > 0 ? { types } : null, after },
    },
    (previous: EventFieldsFragment[] | undefined, message) => prepend(previous, message.events),
  );

  return (
    <>
      {error && <ErrorNote error={error} />}
      <p className="feed-state" data-testid="feed-state">
        {feed?.length ? `last event #${feed[0]?.id}` : `waiting for events after #${after}`}
      </p>
      <ol className="feed" data-testid="event-feed">
        {feed?.map((event) => (
          <EventRow key={event.id} event={event} />
        ))}
      </ol>
    </>
  );
}

function EventRow({ event }: { event: EventFieldsFragment }) {
  return (
    <li
      className="event"
      data-event-id={event.id}
      data-event-type={event.type}
      data-task-id={event.taskId ?? undefined}
      data-agent-id={event.agentId ?? undefined}
      data-workflow-id={event.workflowId ?? undefined}
    >
      <span className="event-id">#{event.id}</span>
      <time dateTime={event.occurredAt}>{new Date(event.occurredAt).toLocaleTimeString()}</time>
      <span className={`event-type ${event.type.split('_')[0]?.toLowerCase()}`}>{event.type}</span>
      <span className="event-subject">{describe(event)}</span>
    </li>
  );
}

function describe(event: EventFieldsFragment): string {
  const parts: string[] = [];
  if (event.task) {
    const progress = event.type === 'TASK_PROGRESS' ? ` ${Math.round(event.task.progress * 100)}%` : '';
    parts.push(`task “${event.task.title}” ${event.task.status}${progress}`);
  }
  if (event.agent) parts.push(`agent ${event.agent.name} ${event.agent.status}`);
  if (event.workflow) parts.push(`workflow “${event.workflow.name}” ${event.workflow.status}`);
  return parts.join(' · ');
}
