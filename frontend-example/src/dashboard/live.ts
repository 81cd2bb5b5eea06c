/** Helpers that fold a query's snapshot and a subscription's stream into one list. */

export interface Identified {
  id: string;
}

export type ById<T> = Readonly<Record<string, T>>;

/**
 * The query's items with the subscription's newer states laid over them,
 * plus the items only the subscription has seen (created since the query).
 */
export function overlay<T extends Identified>(
  snapshot: readonly T[],
  updates: ById<T> | undefined,
  isNewer: (update: T, current: T) => boolean = () => true,
): T[] {
  const merged = new Map(snapshot.map((item) => [item.id, item]));
  for (const update of Object.values(updates ?? {})) {
    const current = merged.get(update.id);
    if (!current || isNewer(update, current)) merged.set(update.id, update);
  }
  return [...merged.values()];
}

/** ISO-8601 instants compared as instants (the server keeps microseconds; ms suffice here). */
export function isAtLeastAsRecent(a: string, b: string): boolean {
  return Date.parse(a) >= Date.parse(b);
}

/** Sorts by a timestamp, newest first. */
export function newestFirst<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => Date.parse(key(b)) - Date.parse(key(a));
}
