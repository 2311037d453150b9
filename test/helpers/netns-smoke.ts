// Manual smoke check of the topology: `node dist/test/helpers/netns-smoke.js`
// Builds it, shows where pings leave, then does by hand what dynmhs should do and checks again.
import { convergence, README_NETS, Topology, WAN1, WAN2, type IpRoute } from './netns';

function copyLine(r: IpRoute, table: number): string {
  return `route add ${r.type && r.type !== 'unicast' ? r.type + ' ' : ''}${r.dst}` +
    (r.gateway ? ` via ${r.gateway}` : '') + ` dev ${r.dev}` + (r.metric !== undefined ? ` metric ${r.metric}` : '') +
    (r.prefsrc ? ` src ${r.prefsrc}` : '') + (r.scope ? ` scope ${r.scope}` : '') + ` table ${table} proto 249`;
}

const t = Topology.create({ tag: 's' });
try {
  t.installCounters();
  const show = () => {
    for (const src of [WAN1.v4, WAN2.v4, WAN1.v6, WAN2.v6]) {
      const p = t.pathOf(src);
      console.log(' ', src.padEnd(12), JSON.stringify(p.counts), p.ok ? 'replies' : 'NO REPLY\n' + p.output);
    }
  };
  console.log('before:'); show();
  console.log('convergence (expect problems):', convergence(t, README_NETS).slice(0, 200));
  for (const fam of [4, 6] as const) {
    const lines: string[] = [];
    for (const w of [WAN1, WAN2]) {
      for (const r of t.routes(fam, 'main').filter((r) => r.dev === w.ifName)) lines.push(copyLine(r, w.table));
      lines.push(`rule add from ${fam === 4 ? w.v4 : w.v6} lookup ${w.table} priority ${w.table} proto 249`);
    }
    t.exec('ip', [`-${fam}`, '-batch', '-'], t.host, lines.join('\n') + '\n');
  }
  console.log('by hand:'); show();
  console.log('convergence (expect ""):', JSON.stringify(convergence(t, README_NETS)));
} finally {
  t.destroy();
}
