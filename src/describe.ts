// One line shape for every object in the log: verb, object, network.
// "Adding rule: from 10.101.0.2 lookup 2000 priority 2000 (wan1)"
import { prefixText } from './address';
import type { Operation, Route, Rule } from './model';

export type DeviceName = (index: number) => string;

const SCOPES: Record<number, string> = { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' };

export function describeRule(rule: Rule): string {
  const from = rule.src === undefined ? 'all' : rule.srcLength === (rule.family === 4 ? 32 : 128) ? rule.src : `${rule.src}/${rule.srcLength}`;
  return `from ${from} lookup ${rule.table} priority ${rule.priority}`;
}

export function describeRoute(route: Route, device: DeviceName = (i) => `#${i}`): string {
  const parts: string[] = [];
  if (route.type !== 'unicast') parts.push(route.type);
  parts.push(prefixText(route.family, route.dst, route.dstLength));
  if (route.src !== undefined && route.srcLength > 0) parts.push(`from ${route.src}/${route.srcLength}`);
  if (route.gateway !== undefined) parts.push(`via ${route.gateway}`);
  if (route.oif !== undefined) parts.push(`dev ${device(route.oif)}`);
  for (const hop of route.nexthops ?? []) {
    parts.push(`nexthop${hop.gateway !== undefined ? ` via ${hop.gateway}` : ''} dev ${device(hop.oif)} weight ${hop.weight}`);
  }
  if (route.scope !== 0) parts.push(`scope ${SCOPES[route.scope] ?? route.scope}`);
  if (route.prefsrc !== undefined) parts.push(`src ${route.prefsrc}`);
  if (route.onlink) parts.push('onlink');
  parts.push(`metric ${route.metric}`, `table ${route.table}`);
  return parts.join(' ');
}

const VERBS: Record<Operation['kind'], string> = {
  'add-route': 'Adding route',
  'replace-route': 'Replacing route',
  'delete-route': 'Removing route',
  'add-rule': 'Adding rule',
  'delete-rule': 'Removing rule',
};

export function describeOperation(op: Operation, device?: DeviceName): string {
  const object = op.kind === 'add-rule' || op.kind === 'delete-rule' ? describeRule(op.rule) : describeRoute(op.route, device);
  return `${VERBS[op.kind]}: ${object}${op.network !== undefined ? ` (${op.network})` : ''}`;
}
