// What to make of an operation the kernel refuses. While a link flaps, the kernel refuses
// copies for a moment (ENETDOWN, ENETUNREACH, EHOSTUNREACH, EINVAL) and the change that
// caused it brings a pass of its own: nothing to alarm anyone about. A copy it refuses
// again although nothing about its network changed in between will not go in by trying
// harder (an IPv6 gateway no longer on the link): say so once, with the kernel's reason,
// and try again only when routes via that network's link change, or any link, address
// or rule does (the cache reports those without saying which network they touch).
import type { Logger } from '../log';
import type { Operation, Route } from '../model';

/** Failures of the conversation with the kernel, or of its resources, not of the object: retried with backoff. */
const TRANSIENT = new Set(['ETIMEDOUT', 'EMSGSIZE', 'ECANCELED', 'ENOBUFS', 'ENOMEM', 'EBUSY', 'EAGAIN', 'EINTR', 'EIO', 'EPERM', 'EACCES']);

const REASONS: Record<string, string> = {
  ENETDOWN: 'the link is down',
  ENETUNREACH: 'no route to the network of its gateway',
  EHOSTUNREACH: 'its gateway is not reachable in that table',
  EINVAL: 'invalid for the kernel, e.g. an IPv6 gateway that is not on the link',
  ENODEV: 'no such device',
  EADDRNOTAVAIL: 'its source address is not on this host',
  EOPNOTSUPP: 'not supported by this kernel',
  ERANGE: 'a value is out of the range the kernel accepts',
};

/** "EHOSTUNREACH: its gateway is not reachable in that table". */
export function refusalReason(code: string): string {
  return REASONS[code] !== undefined ? `${code}: ${REASONS[code]}` : code;
}

export function isTransient(code: string): boolean {
  return TRANSIENT.has(code);
}

interface Refusal {
  readonly network: string | undefined;
  /** The generation of its network when it was last refused. */
  generation: number;
  reported: boolean;
}

export type Verdict =
  /** First refusal, or its network changed since the last: expected while things move; try again. */
  | 'moving'
  /** Refused again with nothing changed: report it (once) and wait for a change. */
  | 'refused';

export class Refusals {
  /** Per network (interface name): counts the passes that saw routes via its link change. */
  private readonly generations = new Map<string, number>();
  /** Counts the passes that saw links, addresses or rules change, or a re-dump: every network's generation moves with it. */
  private everything = 0;
  private readonly refused = new Map<string, Refusal>();
  /** This pass's expected refusals by errno name, for one debug line. */
  private expected = new Map<string, { count: number; example: string }>();

  /**
   * A pass's view of what changed since the last: route changes by key (before, and the
   * cache's current map for after), or undefined when links, addresses or rules changed
   * too or a dump replaced the cache (then every network counts as changed).
   */
  noteChanges(changes: ReadonlyMap<string, Route | undefined> | undefined, current: ReadonlyMap<string, Route>,
    linkName: (index: number) => string | undefined): void {
    if (this.refused.size === 0) return;
    if (changes === undefined) { this.everything++; return; }
    const touched = new Set<string>();
    const touch = (route: Route | undefined): void => {
      if (route === undefined) return;
      for (const index of route.nexthops?.map((hop) => hop.oif) ?? (route.oif !== undefined ? [route.oif] : [])) {
        const name = linkName(index);
        if (name !== undefined) touched.add(name);
      }
    };
    for (const [key, before] of changes) {
      touch(before);
      touch(current.get(key));
    }
    for (const name of touched) this.generations.set(name, (this.generations.get(name) ?? 0) + 1);
  }

  /** True when the operation was refused, reported, and nothing about its network changed since. */
  waiting(key: string, network: string | undefined): boolean {
    const refusal = this.refused.get(key);
    return refusal !== undefined && refusal.reported && refusal.generation === this.generationOf(network);
  }

  /** The kernel refused the operation (not a transient failure). */
  private refusedNow(key: string, network: string | undefined): { verdict: Verdict; report: boolean } {
    const generation = this.generationOf(network);
    const before = this.refused.get(key);
    if (before !== undefined && before.generation === generation) {
      const report = !before.reported;
      before.reported = true;
      return { verdict: 'refused', report };
    }
    this.refused.set(key, { network, generation, reported: before?.reported ?? false });
    return { verdict: 'moving', report: false };
  }

  /**
   * Accounts for a failed operation and logs what a user should see of it. True when it
   * is worth a retry on a timer: a transient failure (logged as an error), or a refusal
   * that may be a change under way.
   */
  failed(op: Operation, key: string, code: string, describe: () => string, log: Logger): boolean {
    if (op.kind === 'delete-route' || op.kind === 'delete-rule' || isTransient(code)) {
      log.error(`${describe()} failed: ${code}; retrying with backoff`);
      return true;
    }
    const { verdict, report } = this.refusedNow(key, op.network);
    if (verdict === 'moving') {
      const tally = this.expected.get(code) ?? { count: 0, example: describe() };
      tally.count++;
      this.expected.set(code, tally);
      return true;
    }
    if (report) {
      log.warning(`${describe()}: refused by the kernel (${refusalReason(code)}); `
        + `trying again when the link, addresses or routes of ${op.network ?? 'its network'} change`);
    }
    return false;
  }

  /** One debug line for the pass's refusals that may be a change under way (a link going down): that change brings a pass of its own. */
  reportExpected(log: Logger): void {
    if (this.expected.size === 0) return;
    log.debug(`The kernel refused ${[...this.expected].map(([code, t]) => `${t.count} with ${code} (e.g. ${t.example})`).join(', ')}; trying again`);
    this.expected = new Map();
  }

  /** Networks with a copy the kernel refuses and that waits for a change: not all there (status "degraded"). */
  networksWaiting(): Set<string> {
    const networks = new Set<string>();
    for (const refusal of this.refused.values()) if (refusal.reported && refusal.network !== undefined) networks.add(refusal.network);
    return networks;
  }

  succeeded(key: string): void {
    this.refused.delete(key);
  }

  /** Keeps only what the last full pass still wanted to do: the rest is no longer wanted, or in place. */
  keepOnly(keys: ReadonlySet<string>): void {
    for (const key of this.refused.keys()) if (!keys.has(key)) this.refused.delete(key);
  }

  /** After a re-dump: what changed meanwhile is unknown, so everything may go in now. */
  clear(): void {
    this.refused.clear();
  }

  get size(): number {
    return this.refused.size;
  }

  private generationOf(network: string | undefined): number {
    return this.everything + (network !== undefined ? this.generations.get(network) ?? 0 : 0);
  }
}
