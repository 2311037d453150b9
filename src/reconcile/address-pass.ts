// A pass after address changes (an address added or removed: the daemon's everyday
// work) need not derive and diff every route. The routes wanted do not depend on
// addresses (policy/derive.ts), so only the rules of the networks on the links whose
// addresses changed are derived again, and only rules are diffed: O(addresses + rules),
// whatever the size of the routing table. The result is what derive + diff would give;
// the unit tests check that on random changes. A table gaining its first rule or losing
// its last returns undefined, and the loop runs the full pass: diff counts the tables with
// our rules or routes as ours and reports the foreign routes and rules in them, so what it
// reports could change.
import { ruleKey } from '../keys';
import type { Observed, Operation, Rule } from '../model';
import { networkRulesOf, uniqueRules, type NetworkPlan } from '../policy/derive';
import { ownsRule } from './diff';

/** What the last pass left wanted: the networks' plans and the rules of all of them. */
export interface RulesWanted {
  readonly plans: readonly NetworkPlan[];
  readonly rules: readonly Rule[];
}

export interface AddressPass extends RulesWanted {
  /** Rules to add, in the order diff() gives them. */
  readonly adds: readonly Operation[];
  /** Our rules to delete, in the order diff() gives them. */
  readonly deletes: readonly Operation[];
}

/**
 * The rules wanted after the addresses of `links` (link indexes) changed, and the rule
 * operations that take the kernel there; undefined when a full pass must decide (see
 * above). `previous` is what a full pass (or a pass like this one since) wanted and put
 * in place, with no link, rule or network change since.
 */
export function rulesAfterAddressChanges(previous: RulesWanted, links: ReadonlySet<number>, observed: Observed,
  network: (table: number) => string | undefined): AddressPass | undefined {
  // A table's rules come and go with its network's (uniqueRules keeps one of each key):
  // unless a network's rules went from none to some or back, the tables are the same.
  let emptinessChanged = false;
  const plans = previous.plans.map((plan): NetworkPlan => {
    if (plan.link === undefined || !links.has(plan.link.index)) return plan;
    const derived = networkRulesOf(plan.network, plan.link, observed.addresses);
    // The rule objects of addresses still there stay the same objects: their keys are known.
    const rules = derived.rules.map((rule) => plan.rules.find((old) => old.src === rule.src && old.family === rule.family
      && old.priority === rule.priority && old.table === rule.table) ?? rule);
    if ((rules.length === 0) !== (plan.rules.length === 0)) emptinessChanged = true;
    return { network: plan.network, link: plan.link, addresses: derived.addresses, rules, routes: plan.routes };
  });
  const rules = uniqueRules(plans);
  if (emptinessChanged && !sameTables(previous.rules, rules)) return undefined;

  const wanted = new Set<string>();
  for (const rule of rules) wanted.add(ruleKey(rule));
  // As diff() does it: with the same tables ours, the same foreign rules in them.
  const present = new Set<string>();
  const deletes: Operation[] = [];
  for (const rule of observed.rules) {
    const key = ruleKey(rule);
    present.add(key);
    if (ownsRule(rule) && !wanted.has(key)) deletes.push({ kind: 'delete-rule', rule, network: network(rule.table) });
  }
  const adds: Operation[] = [];
  for (const rule of rules) if (!present.has(ruleKey(rule))) adds.push({ kind: 'add-rule', rule, network: network(rule.table) });
  return { plans, rules, adds, deletes };
}

/** Both lists have rules in the same tables. */
function sameTables(a: readonly Rule[], b: readonly Rule[]): boolean {
  const tablesOfA = new Set(a.map((rule) => rule.table));
  const tablesOfB = new Set(b.map((rule) => rule.table));
  if (tablesOfA.size !== tablesOfB.size) return false;
  for (const table of tablesOfA) if (!tablesOfB.has(table)) return false;
  return true;
}
