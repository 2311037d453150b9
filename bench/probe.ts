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
import { createNetlink, createRtNetlink, FlagsGet, AttrStream, Protocol, rt, type NetlinkMessage } from 'netlink';

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

async function count(cfg: { tables: number[]; routes: number; rules: number; timeoutMs: number }) {
  const tables = new Set(cfg.tables);
  const mon = createNetlink(Protocol.ROUTE, { ref: true, recvBufferSize: 4 << 20, sendBufferSize: 1 << 20 });
  for (const g of ['IPV4_ROUTE', 'IPV6_ROUTE', 'IPV4_RULE', 'IPV6_RULE'] as const) mon.socket.addMembership(rt.MulticastGroups[g]);
  const routes = new Set<string>();
  const rules = new Set<string>();
  let overflow = false;
  const handle = (m: NetlinkMessage) => {
    if (m.type !== T.NEWROUTE && m.type !== T.DELROUTE && m.type !== T.NEWRULE && m.type !== T.DELRULE) return;
    const p = rt.parseMessage(m.type, m.data);
    if (p.kind === 'route') {
      const table = (p.attrs.table as number | undefined) ?? p.data.table ?? 0;
      if (!tables.has(table) || (p.data.protocol as unknown as number) !== PROTO) return;
      const dst = (p.attrs.dst as Buffer | undefined)?.toString('hex') ?? '';
      const key = `${p.data.family}|${table}|${dst}/${p.data.dstLen}|${p.attrs.priority ?? 0}|${p.data.tos ?? 0}`;
      if (m.type === T.NEWROUTE) routes.add(key); else routes.delete(key);
    } else if (p.kind === 'rule') {
      if ((p.attrs as { protocol?: number }).protocol !== PROTO) return;
      const key = `${p.data.family}|${(p.attrs.src as Buffer | undefined)?.toString('hex')}|${p.attrs.priority}|${p.attrs.table ?? p.data.table}`;
      if (m.type === T.NEWRULE) rules.add(key); else rules.delete(key);
    }
  };
  let resolveDone: (v: { tMs: number | null; routes: number; rules: number; overflow: boolean }) => void = () => undefined;
  const done = new Promise<{ tMs: number | null; routes: number; rules: number; overflow: boolean }>((r) => { resolveDone = r; });
  let dumping = true;
  const queued: NetlinkMessage[] = [];
  const check = () => {
    if (!dumping && routes.size >= cfg.routes && rules.size >= cfg.rules) {
      resolveDone({ tMs: now(), routes: routes.size, rules: rules.size, overflow });
    }
  };
  mon.on('message', (msgs: NetlinkMessage[]) => {
    if (dumping) { queued.push(...msgs); return; }
    for (const m of msgs) handle(m);
    check();
  });
  mon.on('error', () => { overflow = true; });
  for (const type of [T.GETROUTE, T.GETRULE]) {
    const s = new AttrStream();
    if (type === T.GETROUTE) rt.formatRouteMessage({ kind: 'route', data: {}, attrs: {} }, s);
    else rt.formatRuleMessage({ kind: 'rule', data: {}, attrs: {} }, s);
    const [msgs] = await mon.request(type, s.bufs, { flags: FlagsGet.DUMP });
    for (const m of msgs) handle({ ...m, type: type === T.GETROUTE ? T.NEWROUTE : T.NEWRULE });
  }
  dumping = false;
  for (const m of queued) handle(m);
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
