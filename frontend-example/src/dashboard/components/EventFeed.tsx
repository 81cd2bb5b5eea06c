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
      edges {
        node {
          id
        }
      }
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
 * tenant's sequence 1, 2, 3…, and pruning (`mark1 db prune`, retention) only
 * removes the oldest, so the kept ids run from the oldest without a hole: the
 * newest is `oldest + count - 1` and the last `BACKLOG` events start after
 * `newest - BACKLOG` (never before the oldest kept: EVENTS_PRUNED). Because the
 * cursor is always set, a reconnect resumes from the last event received (see
 * `rememberEventCursor`) and nothing that happened while the socket was down is lost.
 */
export function EventFeed() {
  const [types, setTypes] = useState<EventType[]>([]);
  const [{ data, error }] = useQuery({ query: EventCountQuery, requestPolicy: 'network-only' });
  const [start, setStart] = useState<string | null>(null);

  // Fixed once, so changing the filter replays the same window of history.
  if (start === null && data) setStart(String(backlogStart(data.events)));

  return (
    <Panel title="Events" className="events">
      <EventTypeFilter selected={types} onChange={setTypes} />
      {error && <ErrorNote error={error} />}
      {start !== null && <EventList key={types.join(',')} types={types} after={start} />}
    </Panel>
  );
}

/** The cursor after which the last `BACKLOG` kept events follow ("0" when there are none). */
function backlogStart(events: { edges: { node: { id: string } }[]; totalCount: number }): number {
  const oldest = Number(events.edges[0]?.node.id ?? 1);
  const newest = oldest + events.totalCount - 1;
  return Math.max(oldest - 1, newest - BACKLOG);
}
