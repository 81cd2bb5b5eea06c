/** A task, agent or workflow status, coloured by CSS class. */
export function StatusPill({ status }: { status: string }) {
  return <span className={`pill status-${status.toLowerCase()}`}>{status}</span>;
}
