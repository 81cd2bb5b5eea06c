import { useState } from 'react';
import { useQuery } from 'urql';
import { graphql } from '../../gql';
import type { EventType } from '../../gql/graphql';
import { ErrorNote } from './ErrorNote';
import { EventList } from './EventList';
import { EventTypeFilter } from './EventTypeFilter';
import { Panel } from './Panel';

const EventCountQuery = graphql(`
  query EventCount {
    events(first: 1) {
      totalCount
    }
  }
`);

/** How much history the feed replays when it opens. */
const BACKLOG = 50;

/**
 * The tenant's events, newest first, optionally narrowed to some types.
 *
 * The feed always subscribes with an `after` cursor: event ids are the
 * tenant's sequence 1, 2, 3… so the last `BACKLOG` events start after
 * `count - BACKLOG`. Because the cursor is always set, a reconnect resumes
 * from the last event received (see `rememberEventCursor`) and nothing that
 * happened while the socket was down is lost.
 */
export function EventFeed() {
  const [types, setTypes] = useState<EventType[]>([]);
  const [{ data, error }] = useQuery({ query: EventCountQuery, requestPolicy: 'network-only' });
  const [start, setStart] = useState<string | null>(null);

  // Fixed once, so changing the filter replays the same window of history.
  if (start === null && data) setStart(String(Math.max(0, data.events.totalCount - BACKLOG)));

  return (
    <Panel title="Events" className="events">
      <EventTypeFilter selected={types} onChange={setTypes} />
      {error && <ErrorNote error={error} />}
      {start !== null && <EventList key={types.join(',')} types={types} after={start} />}
    </Panel>
  );
}
