// Benchmark probe: runs INSIDE a test namespace (`ip netns exec NS node dist/bench/probe.js MODE JSON`)
// and watches rtnetlink in-process, for µs-precision timestamps. Prints one JSON line.
//
//   latency {"ifName","family","address","prefixLength","runs"}
//       add the address over netlink, time RTM_NEWADDR → RTM_NEWRULE (from that address),
//       delete it, time RTM_DELADDR → RTM_DELRULE; repeat.
//   count {"tables":[2000,3000],"routes":N,"rules":M,"timeoutMs"}
//       dump, then follow events until dynmhs-tagged routes in those tables reach N and its
//       rules reach M; prints the time (epoch ms, µs resolution) it happened.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createNetlink, createRtNetlink, Protocol, rt, type NetlinkMessage } from 'netlink';
import { RawNetlinkSocket } from 'netlink/dist/raw';
import type { CacheEvent } from '../src/kernel/cache';
import { decodeEvent, forEachMessage, GROUPS } from '../src/kernel/codec';
import { DumpSocket } from '../src/kernel/dump';
import { routeKey, ruleKey } from '../src/keys';

const PROTO = 249;
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

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
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
  const add: number[] = []; const addFromSend: number[] = []; const del: number[] = [];
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
      await cmd.delAddress(data, attrs);
      const tda = await waitKey('addr-del');
      const tdr = await waitKey('rule-del');
      del.push(tdr - tda);
    } catch (e) {
      failures++;
      try { await cmd.delAddress(data, attrs); } catch { /* gone */ }
      if (failures > 5) throw e;
    }
    await new Promise((r) => setTimeout(r, 3));
  }
  mon.close();
  cmd.socket.close();
  const stats = (xs: number[]) => xs.length === 0 ? null : ({
    n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), min: Math.min(...xs), max: Math.max(...xs),
  });
  return { addrEventToRule: stats(add), sendToRule: stats(addFromSend), delAddrEventToRuleGone: stats(del), failures };
}

/**
 * Counts with the daemon's own wire decoder (codec.ts, checked against the netlink
 * package's decoder in the unit tests): the package's generic parser took longer for a
 * 10,000-route burst than the daemon did, and so measured itself.
 */
async function count(cfg: { tables: number[]; routes: number; rules: number; timeoutMs: number }) {
  const tables = new Set(cfg.tables);
  const mon = new RawNetlinkSocket(0, { recvBufferSize: 8 << 20, sendBufferSize: 1 << 20 });
  for (const g of [GROUPS.IPV4_ROUTE, GROUPS.IPV6_ROUTE, GROUPS.IPV4_RULE, GROUPS.IPV6_RULE]) mon.addMembership(g);
  const routes = new Set<string>();
  const rules = new Set<string>();
  let overflow = false;
  const handle = (event: CacheEvent | undefined): void => {
    if (event?.kind === 'route') {
      if (!tables.has(event.route.table) || event.route.protocol !== PROTO) return;
      if (event.removed) routes.delete(routeKey(event.route)); else routes.add(routeKey(event.route));
    } else if (event?.kind === 'rule') {
      if (event.rule.protocol !== PROTO) return;
      if (event.removed) rules.delete(ruleKey(event.rule)); else rules.add(ruleKey(event.rule));
    }
  };
  let resolveDone: (v: { tMs: number | null; routes: number; rules: number; overflow: boolean }) => void = () => undefined;
  const done = new Promise<{ tMs: number | null; routes: number; rules: number; overflow: boolean }>((r) => { resolveDone = r; });
  let dumping = true;
  const queued: Buffer[] = [];
  const check = () => {
    if (!dumping && routes.size >= cfg.routes && rules.size >= cfg.rules) {
      resolveDone({ tMs: now(), routes: routes.size, rules: rules.size, overflow });
    }
  };
  const handleDatagram = (data: Buffer): void => {
    forEachMessage(data, (type, flags, _seq, start, end) => handle(decodeEvent(type, flags, data, start, end)));
  };
  mon.on('message', (data: Buffer) => {
    if (dumping) { queued.push(data); return; }
    handleDatagram(data);
    check();
  });
  mon.on('error', () => { overflow = true; });
  const dumper = new DumpSocket(8 << 20);
  for (const kind of ['routes', 'rules'] as const) for (const event of await dumper.dump(kind, 30000)) handle(event);
  dumper.close();
  dumping = false;
  for (const data of queued) handleDatagram(data);
  process.stdout.write('READY\n');
  check();
  const timer = setTimeout(() => resolveDone({ tMs: null, routes: routes.size, rules: rules.size, overflow }), cfg.timeoutMs);
  const r = await done;
  clearTimeout(timer);
  mon.close();
  return r;
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
