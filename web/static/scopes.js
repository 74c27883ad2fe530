// The scopes of figures in the order the pages list them: the centre, then queues, channels, directions.

export const SCOPES = ["centre", "queue", "channel", "direction"];

/** Figures (or alerts) by scope in that order, then by key. */
export function byScopeAndKey(a, b) {
  return (SCOPES.indexOf(a.scope) - SCOPES.indexOf(b.scope)) || a.key.localeCompare(b.key);
}
