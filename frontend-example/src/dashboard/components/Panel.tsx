import type { ReactNode } from 'react';

interface Props {
  title: string;
  count?: number | undefined;
  className?: string;
  children: ReactNode;
}

export function Panel({ title, count, className, children }: Props) {
  return (
    <section className={`panel ${className ?? ''}`} aria-label={title}>
      <h2>
        {title}
        {count !== undefined && <span className="count">{count}</span>}
      </h2>
      {children}
    </section>
  );
}
