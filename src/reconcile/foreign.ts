// What a full pass tells the user about others: their routes and rules in our tables
// (once each, until they are gone), and restores of ours that someone deleted.
import { describeRoute, describeRule } from '../describe';
import { routeKey, ruleKey } from '../keys';
import type { Logger } from '../log';
import type { Observed, Operation } from '../model';
import type { Plan } from './diff';

export const NETWORKD_DROP_IN = '/etc/systemd/networkd.conf.d/dynmhs.conf';

/** The warning for a restore of ours that another program deleted (`count` within a minute). */
export function warnRestore(log: Logger, op: Operation, count: number): void {
  const isRule = op.kind === 'add-rule' || op.kind === 'delete-rule';
  const what = isRule ? `Rule ${describeRule(op.rule)}` : `Route ${describeRoute(op.route)}`;
  const setting = isRule ? 'ManageForeignRoutingPolicyRules=no' : 'ManageForeignRoutes=no';
  log.warning(
    `${what}${op.network !== undefined ? ` (${op.network})` : ''} was deleted by another program; restoring it`
    + ` (${count} time${count === 1 ? '' : 's'} within a minute, further restores back off).`
    + ` If systemd-networkd runs here, install ${NETWORKD_DROP_IN} with ${setting}.`,
  );
}

/** Foreign routes and rules in our tables, and wanted places taken: each warned about once while it lasts. */
export class ForeignReports {
  private readonly reported = new Set<string>();

  constructor(private readonly log: Logger) {}

  report(plan: Plan, observed: Observed): void {
    const { log } = this;
    const device = (index: number): string => observed.links.get(index)?.name ?? `#${index}`;
    const seen = new Set<string>();
    for (const route of plan.foreignRoutes) {
      const key = `foreign route ${routeKey(route)}`;
      seen.add(key);
      if (!this.reported.has(key)) log.warning(`Leaving foreign route alone: ${describeRoute(route, device)} (protocol ${route.protocol}, not ours)`);
    }
    for (const rule of plan.foreignRules) {
      const key = `foreign rule ${ruleKey(rule)}`;
      seen.add(key);
      if (!this.reported.has(key)) log.warning(`Leaving foreign rule alone: ${describeRule(rule)} (protocol ${rule.protocol}, not ours)`);
    }
    for (const conflict of plan.conflicts) {
      const key = `conflict ${routeKey(conflict.wanted)}`;
      seen.add(key);
      if (!this.reported.has(key)) {
        log.warning(`Not adding route ${describeRoute(conflict.wanted, device)}: a foreign route holds its place (${describeRoute(conflict.present, device)})`);
      }
    }
    this.reported.clear();
    for (const key of seen) this.reported.add(key);
  }
}
