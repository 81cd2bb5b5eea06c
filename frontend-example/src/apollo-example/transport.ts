/** Which transport carries the Apollo example's subscriptions, chosen by `?transport=`. */

export type SubscriptionTransport = 'graphql-ws' | 'multipart';

export const TRANSPORT_PARAM = 'transport';

/** How the page names each transport. */
export const TRANSPORT_LABELS: Record<SubscriptionTransport, string> = {
  'graphql-ws': 'graphql-ws (WebSocket)',
  multipart: 'multipart HTTP',
};

/** `?transport=multipart` runs subscriptions over multipart HTTP; anything else, graphql-ws. */
export function resolveTransport(location: Location = window.location): SubscriptionTransport {
  return new URLSearchParams(location.search).get(TRANSPORT_PARAM) === 'multipart'
    ? 'multipart'
    : 'graphql-ws';
}

/** This page's address with `transport` instead of the current one (other parameters kept). */
export function transportHref(
  transport: SubscriptionTransport,
  location: Location = window.location,
): string {
  const url = new URL(location.href);
  if (transport === 'graphql-ws') url.searchParams.delete(TRANSPORT_PARAM);
  else url.searchParams.set(TRANSPORT_PARAM, transport);
  return url.toString();
}
