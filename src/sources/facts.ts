// Small pure helpers on ConnectionFact lists (no I/O, no D-Bus).
import type { ConnectionFact } from './types';

/** Held facts, except those the manager reports again (same uuid or interface); then the current ones. */
export function mergeHeld(held: readonly ConnectionFact[], current: readonly ConnectionFact[]): readonly ConnectionFact[] {
  const uuids = new Set(current.map((f) => f.connectionUuid));
  const names = new Set(current.map((f) => f.interfaceName));
  return sortFacts([...held.filter((f) => !uuids.has(f.connectionUuid) && !names.has(f.interfaceName)), ...current]);
}

export function sortFacts(facts: readonly ConnectionFact[]): ConnectionFact[] {
  return [...facts].sort((a, b) => (a.interfaceName < b.interfaceName ? -1 : a.interfaceName > b.interfaceName ? 1 : a.connectionUuid < b.connectionUuid ? -1 : a.connectionUuid > b.connectionUuid ? 1 : 0));
}

export function sameFacts(a: readonly ConnectionFact[], b: readonly ConnectionFact[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((f, i) => {
    const g = b[i]!;
    return f.interfaceName === g.interfaceName && f.connectionUuid === g.connectionUuid && f.connectionId === g.connectionId
      && f.deviceType === g.deviceType && f.origin === g.origin;
  });
}
