// Benchmark probe: runs INSIDE a test namespace (`ip netns exec NS node dist/bench/probe.js MODE JSON`)
// and watches rtnetlink in-process, for µs-precision timestamps. Prints one JSON line.
//
//   latency {"ifName","family","address","prefixLength","runs"}
//       add the address over netlink, time RTM_NEWADDR → RTM_NEWRULE (from that address),
//       delete it, time RTM_DELADDR → RTM_DELRULE; repeat. Also from the probe's own request
//       (sendToRule, delSendToRuleGone): a daemon that answers before the probe has read the
//       address event (upstream often does) shows the probe's read delay in the first two.
//   count {"tables":[2000,3000],"routes":N,"rules":M,"timeoutMs","protocol":249,"receiveBufferMb":8}
//       dump, then follow events until routes of that protocol in those tables reach N and
//       rules of that protocol reach M; prints the time (epoch ms, µs resolution) it happened,
//       checked by a dump. "protocol": null counts every route in those tables and every
//       rule that looks one up (upstream DynMHS tags neither).

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createNetlink, createRtNetlink, Protocol, rt, type NetlinkMessage } from 'netlink';
import { RawNetlinkSocket } from 'netlink/dist/raw';
import { decodeEvent, forEachMessage, GROUPS, NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, RTM } from '../src/kernel/codec';
import { RequestWriter } from '../src/kernel/requests';
import { DumpSocket } from '../src/kernel/dump';
import { attachFilter, onlyRoutesOfProtocol } from '../src/kernel/filter';
import { ruleKey } from '../src/keys';
import { stats } from './stats';

const PROTO = 249;
const RTA_TABLE = 15;
const NLM_F_REPLACE = 0x100;
const T = rt.MessageType;
const now = (): number => performance.timeOrigin + performance.now();

function addrBuf(a: string): Buffer {
  if (!a.includes(':')) return Buffer.from(a.split('.').map(Number));
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

type Waiter = { key: string; resolve: (t: number) => void };

async function latency(cfg: { ifName: string; family: 4 | 6; address: string; prefixLength: number; runs: number }) {
  const index = Number(readFileSync(`/sys/class/net/${cfg.ifName}/ifindex`, 'utf8'));
  const addr = addrBuf(cfg.address);
  const mon = createNetlink(Protocol.ROUTE, { ref: true, recvBufferSize: 4 << 20, sendBufferSize: 1 << 20 });
  for (const g of ['IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_RULE', 'IPV6_RULE'] as const) mon.socket.addMembership(rt.MulticastGroups[g]);
  const cmd = createRtNetlink();
  const seen = new Map<string, number>();
  let waiters: Waiter[] = [];
  mon.on('message', (msgs: NetlinkMessage[]) => {
    const t = now();
    for (const m of msgs) {
      let key: string | undefined;
      const p = rt.parseMessage(m.type, m.data);
      if (p.kind === 'address') {
        const a = (p.attrs.local ?? p.attrs.address) as Buffer | undefined;
        if (a && a.equals(addr)) key = m.type === T.NEWADDR ? 'addr-new' : 'addr-del';
      } else if (p.kind === 'rule') {
        const s = p.attrs.src as Buffer | undefined;
        if (s && s.equals(addr)) key = m.type === T.NEWRULE ? 'rule-new' : 'rule-del';
      }
      if (key === undefined) continue;
      seen.set(key, t);
      waiters = waiters.filter((w) => (w.key === key ? (w.resolve(t), false) : true));
    }
  });
  const waitKey = (key: string, timeoutMs = 3000): Promise<number> => {
    const have = seen.get(key);
    if (have !== undefined) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout waiting for ${key}`)), timeoutMs);
      waiters.push({ key, resolve: (t) => { clearTimeout(timer); resolve(t); } });
    });
  };
  const family = cfg.family === 4 ? 2 : 10;
  const data = { family, prefixlen: cfg.prefixLength, index, flags: { nodad: true } as const };
  const attrs = { local: addr, address: addr, flags: { nodad: true, noprefixroute: true } as const };
  const add: number[] = []; const addFromSend: number[] = []; const del: number[] = []; const delFromSend: number[] = [];
  let failures = 0;
  for (let i = 0; i < cfg.runs; i++) {
    seen.clear();
    try {
      const t0 = now();
      await cmd.newAddress(data, attrs, { flags: 0x400 | 0x200 } as never); // CREATE | EXCL
      const ta = await waitKey('addr-new');
      const tr = await waitKey('rule-new');
      add.push(tr - ta);
      addFromSend.push(tr - t0);
      const td0 = now();
      await cmd.delAddress(data, attrs);
      const tda = await waitKey('addr-del');
      const tdr = await waitKey('rule-del');
      del.push(tdr - tda);
      delFromSend.push(tdr - td0);
    } catch (e) {
      failures++;
      try { await cmd.delAddress(data, attrs); } catch { /* gone */ }
      if (failures > 5) throw e;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  mon.close();
  cmd.socket.close();
  // The samples themselves too: the bench merges rounds run against fresh daemons.
  return { addrEventToRule: stats(add), sendToRule: stats(addFromSend), delAddrEventToRuleGone: stats(del),
    delSendToRuleGone: stats(delFromSend), failures,
    samples: { addrEventToRule: add, sendToRule: addFromSend, delAddrEventToRuleGone: del, delSendToRuleGone: delFromSend } };
}

/**
 * Counting must keep pace with a 10,000-route burst, or it measures itself: at start-up
 * the full decode of every event (codec.ts) lagged the kernel by ~100 ms next to a busy
 * daemon on 2 CPUs. So route events are only counted (type, protocol byte, table), and
 * the moment the counts are reached is checked afterwards with a dump.
 * Rules are few and decoded in full.
 */
async function count(cfg: { tables: number[]; routes: number; rules: number; timeoutMs: number; protocol?: number | null; receiveBufferMb?: number }) {
  const tables = new Set(cfg.tables);
  const protocol = cfg.protocol === undefined ? PROTO : cfg.protocol;
  const routeCounts = (proto: number, table: number): boolean => (protocol === null || proto === protocol) && tables.has(table);
  const ruleCounts = (rule: { protocol: number; table: number }): boolean =>
    protocol === null ? tables.has(rule.table) : rule.protocol === protocol;
  const bufferBytes = (cfg.receiveBufferMb ?? 8) << 20;
  const mon = new RawNetlinkSocket(0, { recvBufferSize: bufferBytes, sendBufferSize: 1 << 20 });
  // Only our routes and the rules reach the probe: a measuring device that wakes up for
  // each of a burst's 10,000 main-table routes takes a CPU from what it measures.
  // (Untagged copies cannot be told apart by a filter; a start-up adds no main routes.)
  if (protocol !== null) attachFilter(mon, onlyRoutesOfProtocol(protocol, [RTM.NEWROUTE, RTM.DELROUTE], [RTM.NEWRULE, RTM.DELRULE]));
  for (const g of [GROUPS.IPV4_ROUTE, GROUPS.IPV6_ROUTE, GROUPS.IPV4_RULE, GROUPS.IPV6_RULE]) mon.addMembership(g);
  const dumper = new DumpSocket(8 << 20);
  const routeDumper = new RouteCountingDump(bufferBytes);
  let dumps: Promise<unknown> = Promise.resolve();
  /** One dump at a time (the overflow fallback below dumps too). */
  const ours = (): Promise<{ routes: number; rules: Set<string> }> => {
    const next = dumps.catch(() => undefined).then(oursNow);
    dumps = next;
    return next;
  };
  const oursNow = async (): Promise<{ routes: number; rules: Set<string> }> => {
    // Counted from the raw messages: a million routes decoded into objects would take
    // the probe seconds and a gigabyte.
    const routes = await routeDumper.count(routeCounts, Math.max(30000, cfg.timeoutMs));
    const rules = new Set<string>();
    for (const event of await dumper.dump('rules', 30000)) {
      if (event.kind === 'rule' && ruleCounts(event.rule)) rules.add(ruleKey(event.rule));
    }
    return { routes, rules };
  };
  let overflow = false;
  /** When the first change of ours arrived after READY: splits a start-up into before and during the writes. */
  let firstAt: number | undefined;
  let routes = 0;
  let rules = new Set<string>();
  const handle = (type: number, flags: number, data: Buffer, start: number, end: number): void => {
    if (type === RTM.NEWROUTE || type === RTM.DELROUTE) {
      if (end - start < 12 || !routeCounts(data[start + 5], routeTable(data, start, end))) return;
      if (type === RTM.DELROUTE) routes--;
      else if ((flags & NLM_F_REPLACE) === 0) routes++;
      return;
    }
    const event = decodeEvent(type, flags, data, start, end);
    if (event?.kind !== 'rule' || !ruleCounts(event.rule)) return;
    if (event.removed) rules.delete(ruleKey(event.rule)); else rules.add(ruleKey(event.rule));
  };
  let reached: ((tMs: number) => void) | undefined;
  const done = new Promise<number>((r) => { reached = r; });
  let dumping = true;
  const queued: Buffer[] = [];
  const check = (): void => {
    if (!dumping && routes >= cfg.routes && rules.size >= cfg.rules && reached !== undefined) {
      reached(now());
      reached = undefined;
    }
  };
  const handleDatagram = (data: Buffer): void => {
    forEachMessage(data, (type, flags, _seq, start, end) => handle(type, flags, data, start, end));
  };
  mon.on('message', (data: Buffer) => {
    if (dumping) { queued.push(data); return; }
    firstAt ??= now();
    handleDatagram(data);
    check();
  });
  /**
   * Events were lost (ENOBUFS): the counts cannot be trusted any more. From then on the
   * moment is found by dumping until the counts are reached, which is coarser (by the
   * time a dump takes); `overflow` in the result says so.
   */
  const pollByDumps = async (): Promise<void> => {
    while (reached !== undefined) {
      const c = await ours().catch(() => undefined);
      if (c !== undefined && c.routes >= cfg.routes && c.rules.size >= cfg.rules) {
        reached?.(now());
        reached = undefined;
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  mon.on('error', () => {
    if (overflow) return;
    overflow = true;
    if (!dumping) void pollByDumps();
  });
  // Events queued while dumping are counted on top: start the probe while the tables are quiet.
  ({ routes, rules } = await ours());
  dumping = false;
  for (const data of queued) handleDatagram(data);
  process.stdout.write('READY\n');
  if (overflow) void pollByDumps();
  check();
  const timer = setTimeout(() => { reached?.(Number.NaN); reached = undefined; }, cfg.timeoutMs);
  const t = await done;
  clearTimeout(timer);
  mon.close();
  const verified = await ours();
  dumper.close();
  routeDumper.close();
  const ok = !Number.isNaN(t) && verified.routes >= cfg.routes && verified.rules.size >= cfg.rules;
  return { tMs: ok ? t : null, firstMs: firstAt ?? null, routes: verified.routes, rules: verified.rules.size, counted: { routes, rules: rules.size }, overflow };
}

/** A route dump that only counts the routes `counts` accepts (by protocol and table), repeated if interrupted. */
class RouteCountingDump {
  private readonly socket: RawNetlinkSocket;
  private readonly writer = new RequestWriter();
  private seq = 0;
  private onData?: (data: Buffer) => void;

  constructor(bufferBytes: number) {
    this.socket = new RawNetlinkSocket(0, { recvBufferSize: bufferBytes, sendBufferSize: 1 << 20 });
    this.socket.on('message', (data: Buffer) => this.onData?.(data));
  }

  async count(counts: (protocol: number, table: number) => boolean, timeoutMs: number): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const { n, interrupted } = await this.once(counts, timeoutMs);
      if (!interrupted || attempt >= 5) return n;
    }
  }

  private once(counts: (protocol: number, table: number) => boolean, timeoutMs: number): Promise<{ n: number; interrupted: boolean }> {
    const seq = ++this.seq;
    this.writer.dump('routes', seq, this.socket.address().port);
    const request = this.writer.take();
    return new Promise((resolve, reject) => {
      let n = 0;
      let interrupted = false;
      const finish = (error?: Error): void => {
        this.onData = undefined;
        clearTimeout(timer);
        if (error !== undefined) reject(error); else resolve({ n, interrupted });
      };
      const timer = setTimeout(() => finish(new Error(`no end of the route dump after ${timeoutMs} ms`)), timeoutMs);
      this.onData = (data) => forEachMessage(data, (type, flags, s, start, end) => {
        if (s !== seq) return;
        if ((flags & NLM_F_DUMP_INTR) !== 0) interrupted = true;
        if (type === NLMSG_DONE) finish();
        else if (type === NLMSG_ERROR) finish(new Error('route dump failed'));
        else if (type === RTM.NEWROUTE && end - start >= 12 && counts(data[start + 5], routeTable(data, start, end))) n++;
      });
      this.socket.send(request, {}, (error?: Error) => { if (error) finish(error); });
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** RTA_TABLE, or the header's 8-bit table when the message has none. */
function routeTable(data: Buffer, start: number, end: number): number {
  for (let a = start + 12; a + 8 <= end;) {
    const length = data.readUInt16LE(a);
    if (length < 4) break;
    if ((data.readUInt16LE(a + 2) & 0x3fff) === RTA_TABLE) return data.readUInt32LE(a + 4);
    a += (length + 3) & ~3;
  }
  return data[start + 4];
}

async function main(): Promise<void> {
  const [mode, json] = process.argv.slice(2);
  const cfg = JSON.parse(json ?? '{}');
  const result = mode === 'latency' ? await latency(cfg) : mode === 'count' ? await count(cfg) : undefined;
  if (result === undefined) throw new Error(`unknown mode ${mode}`);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
  process.exit(1);
});
