// Per-connection table allocation: explicit mappings, stable allocation, foreign tables,
// idle freeing, persistence, corrupt and unwritable state.
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TableAllocator, StateDirectoryError, selectorMatches, isSelected, explicitMapping, type TableConfig } from '../../src/sources/tables';
import type { ConnectionFact } from '../../src/sources/types';
import type { NetworkSpec } from '../../src/config/types';
import type { Logger } from '../../src/log';

interface Logged { level: string; message: string }
function memoryLog(): Logger & { lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: string) => (message: string): void => { lines.push({ level, message }); };
  return {
    lines, trace: at('trace'), debug: at('debug'), info: at('info'), warning: at('warning'), error: at('error'), fatal: at('fatal'),
    setLevel: () => undefined, level: () => 0, close: async () => undefined,
  };
}

const fact = (name: string, uuid: string, over: Partial<ConnectionFact> = {}): ConnectionFact => ({
  interfaceName: name, origin: 'networkmanager', connectionId: name, connectionUuid: uuid, deviceType: 'ethernet', ...over,
});
const spec = (match: NetworkSpec['match'], value: string, table: number): NetworkSpec => ({ match, value, table, definedAt: 'test' });

let dir: string;
let clock: number;
const now = (): number => clock;
function config(over: Partial<TableConfig> = {}): TableConfig {
  return { networks: [], include: [], exclude: [], tableRange: { first: 1000, last: 1009 }, stateDirectory: dir, tableIdleSeconds: 3600, ...over };
}
const tables = (nets: ReturnType<TableAllocator['assign']>): Record<string, number> => Object.fromEntries(nets.map((n) => [n.interfaceName, n.table]));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dynmhs-tables-'));
  clock = Date.parse('2026-01-01T00:00:00Z');
});
afterEach(() => {
  try { chmodSync(dir, 0o755); } catch { /* gone */ }
  rmSync(dir, { recursive: true, force: true });
});

describe('selectors', () => {
  test('kinds match what they say; types case-insensitive; modem matches gsm/cdma', () => {
    const f = fact('wwan0', 'AbC-1', { deviceType: 'gsm', connectionId: 'LTE' });
    assert.ok(selectorMatches({ match: 'uuid', value: 'abc-1' }, f));
    assert.ok(selectorMatches({ match: 'id', value: 'LTE' }, f));
    assert.ok(!selectorMatches({ match: 'id', value: 'lte' }, f));
    assert.ok(selectorMatches({ match: 'interface', value: 'wwan0' }, f));
    assert.ok(selectorMatches({ match: 'type', value: 'GSM' }, f));
    assert.ok(selectorMatches({ match: 'type', value: 'modem' }, f));
    assert.ok(!selectorMatches({ match: 'type', value: 'wifi' }, f));
  });
  test('loopback never; exclude wins over include; include admits only matches or explicit mappings', () => {
    const base = { include: [], exclude: [], networks: [] };
    assert.ok(!isSelected(fact('lo', 'l', { deviceType: 'loopback' }), base));
    assert.ok(isSelected(fact('wan1', 'a'), base));
    const wg = fact('wg0', 'w', { deviceType: 'wireguard' });
    assert.ok(!isSelected(wg, { ...base, exclude: [{ match: 'type', value: 'wireguard' }] }));
    assert.ok(!isSelected(wg, { ...base, include: [{ match: 'type', value: 'wireguard' }], exclude: [{ match: 'interface', value: 'wg0' }] }));
    const inc = { ...base, include: [{ match: 'type' as const, value: 'wifi' }] };
    assert.ok(!isSelected(fact('wan1', 'a'), inc));
    assert.ok(isSelected(fact('wlan0', 'b', { deviceType: 'wifi' }), inc));
    assert.ok(isSelected(fact('wan1', 'a'), { ...inc, networks: [spec('uuid', 'a', 2000)] }));
  });
  test('explicit mapping: uuid before id before interface before type', () => {
    const f = fact('wan1', 'u1', { connectionId: 'Home' });
    const nets = [spec('type', 'ethernet', 4000), spec('interface', 'wan1', 3000), spec('id', 'Home', 2500), spec('uuid', 'u1', 2000)];
    assert.equal(explicitMapping(f, nets)?.table, 2000);
    assert.equal(explicitMapping(f, nets.slice(0, 3))?.table, 2500);
    assert.equal(explicitMapping(f, nets.slice(0, 2))?.table, 3000);
    assert.equal(explicitMapping(f, nets.slice(0, 1))?.table, 4000);
    assert.equal(explicitMapping(fact('x', 'y', { deviceType: 'wifi' }), nets), undefined);
  });
});

describe('TableAllocator', () => {
  test('allocates the lowest free tables; priority follows the table; origin and identity kept', () => {
    const a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: () => false, now });
    const nets = a.assign([fact('wan1', 'u1'), fact('wan2', 'u2', { origin: 'networkd', deviceType: 'veth' })]);
    assert.deepEqual(nets, [
      { interfaceName: 'wan1', table: 1000, priority: 1000, origin: 'networkmanager', connectionId: 'wan1', connectionUuid: 'u1', deviceType: 'ethernet' },
      { interfaceName: 'wan2', table: 1001, priority: 1001, origin: 'networkd', connectionId: 'wan2', connectionUuid: 'u2', deviceType: 'veth' },
    ]);
  });

  test('stable across reconnects, other connections coming and going, new interface names and restarts', () => {
    const log = memoryLog();
    let a = new TableAllocator({ config: config(), log, tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1'), fact('wan2', 'u2')])), { wan1: 1000, wan2: 1001 });
    assert.deepEqual(tables(a.assign([fact('wan2', 'u2')])), { wan2: 1001 });
    assert.deepEqual(tables(a.assign([fact('wan3', 'u3'), fact('wan2', 'u2')])), { wan2: 1001, wan3: 1002 });
    // u1 comes back on another interface name (USB modem replugged): same table
    assert.deepEqual(tables(a.assign([fact('wwan1', 'u1'), fact('wan2', 'u2'), fact('wan3', 'u3')])), { wwan1: 1000, wan2: 1001, wan3: 1002 });
    // daemon restart: a new allocator on the same directory
    a.flush();
    a = new TableAllocator({ config: config(), log, tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan3', 'u3'), fact('x', 'u4'), fact('wan1', 'u1')])), { wan1: 1000, wan3: 1002, x: 1003 });
    const file = JSON.parse(readFileSync(join(dir, 'tables.json'), 'utf8'));
    assert.equal(file.version, 1);
    assert.deepEqual(Object.fromEntries(Object.entries(file.connections).map(([k, v]) => [k, (v as { table: number }).table])), { u1: 1000, u2: 1001, u3: 1002, u4: 1003 });
  });

  test('explicit mappings win and their tables are never allocated automatically', () => {
    const nets = [spec('uuid', 'u2', 1000), spec('id', 'Home WiFi', 2000), spec('type', 'gsm', 4000)];
    const log = memoryLog();
    const a = new TableAllocator({ config: config({ networks: nets }), log, tableInUse: () => false, now });
    const got = a.assign([
      fact('wan1', 'u1'), fact('wan2', 'u2'), fact('wlan0', 'u3', { connectionId: 'Home WiFi', deviceType: 'wifi' }),
      fact('wwan0', 'u4', { deviceType: 'gsm' }), fact('wwan1', 'u5', { deviceType: 'gsm' }),
    ]);
    assert.deepEqual(tables(got), { wan1: 1001, wan2: 1000, wlan0: 2000, wwan0: 4000, wwan1: 1002 });
    assert.ok(log.lines.some((l) => l.level === 'warning' && /table 4000 already serves/.test(l.message)));
  });

  test('a stored table that became an explicit mapping is reallocated', () => {
    let a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1')])), { wan1: 1000 });
    a = new TableAllocator({ config: config({ networks: [spec('interface', 'eth9', 1000)] }), log: memoryLog(), tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1')])), { wan1: 1001 });
  });

  test('never a table that holds foreign routes or rules', () => {
    const foreign = new Set([1000, 1002]);
    const a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: (t) => foreign.has(t), now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1'), fact('wan2', 'u2'), fact('wan3', 'u3')])), { wan1: 1001, wan2: 1003, wan3: 1004 });
  });

  test('a full range: error logged, connection not managed, others unaffected', () => {
    const log = memoryLog();
    const a = new TableAllocator({ config: config({ tableRange: { first: 1000, last: 1001 } }), log, tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('a', 'u1'), fact('b', 'u2'), fact('c', 'u3')])), { a: 1000, b: 1001 });
    assert.ok(log.lines.some((l) => l.level === 'error' && /No free table in 1000-1001/.test(l.message)));
  });

  test('freed after tableIdleSeconds unseen (not before), counted from the later of last seen and start', () => {
    const log = memoryLog();
    const a = new TableAllocator({ config: config({ tableIdleSeconds: 60, tableRange: { first: 1000, last: 1001 } }), log, tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1')])), { wan1: 1000 });
    clock += 10_000;
    a.assign([]); // u1 gone at t+10 s
    clock += 59_000;
    a.assign([fact('wan2', 'u2')]);
    assert.ok(a.allocations().has('u1'), 'still kept at 59 s');
    clock += 2_000;
    a.assign([fact('wan2', 'u2')]);
    assert.ok(!a.allocations().has('u1'), 'freed after 61 s');
    assert.ok(log.lines.some((l) => /Freed table 1000 of connection wan1/.test(l.message)));
    // the freed table is available again
    assert.deepEqual(tables(a.assign([fact('wan2', 'u2'), fact('wan3', 'u3')])), { wan2: 1001, wan3: 1000 });
    // an active connection is never freed, however long it stays
    clock += 10 * 3600_000;
    a.assign([fact('wan2', 'u2'), fact('wan3', 'u3')]);
    assert.equal(a.allocations().size, 2);
  });

  test('restart: stored last-seen older than the idle time is not freed before idle seconds of our own uptime', () => {
    const a = new TableAllocator({ config: config({ tableIdleSeconds: 60 }), log: memoryLog(), tableInUse: () => false, now });
    a.assign([fact('wan1', 'u1')]);
    a.assign([]);
    clock += 3600_000; // an hour later the daemon starts again; NM has not brought wan1 up yet
    const b = new TableAllocator({ config: config({ tableIdleSeconds: 60 }), log: memoryLog(), tableInUse: () => false, now });
    b.assign([]);
    assert.ok(b.allocations().has('u1'));
    clock += 30_000;
    assert.deepEqual(tables(b.assign([fact('wan1', 'u1')])), { wan1: 1000 });
  });

  test('the state file is written atomically (no temporary left) and lists id and last seen', () => {
    const a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: () => false, now });
    a.assign([fact('wan1', 'u1', { connectionId: 'Home' })]);
    assert.deepEqual(readdirSync(dir), ['tables.json']);
    const file = JSON.parse(readFileSync(join(dir, 'tables.json'), 'utf8'));
    assert.deepEqual(file.connections.u1, { table: 1000, id: 'Home', lastSeen: '2026-01-01T00:00:00.000Z' });
  });

  test('a corrupt state file is moved aside with a warning and rebuilt', () => {
    for (const garbage of ['{not json', '{"version": 2, "connections": {}}', '{"version":1,"connections":{"a":{"table":5,"lastSeen":"2026-01-01T00:00:00Z"}}}',
      '{"version":1,"connections":{"a":{"table":1000,"lastSeen":"2026-01-01T00:00:00Z"},"b":{"table":1000,"lastSeen":"2026-01-01T00:00:00Z"}}}',
      '\u0000\u0001binary']) {
      rmSync(dir, { recursive: true, force: true });
      dir = mkdtempSync(join(tmpdir(), 'dynmhs-tables-'));
      writeFileSync(join(dir, 'tables.json'), garbage);
      const log = memoryLog();
      const a = new TableAllocator({ config: config(), log, tableInUse: () => false, now });
      assert.deepEqual(tables(a.assign([fact('wan1', 'u1')])), { wan1: 1000 }, garbage);
      const names = readdirSync(dir).sort();
      assert.equal(names.length, 2, `${garbage}: ${names.join(', ')}`);
      assert.match(names[1]!, /^tables\.json\.corrupt-2026-01-01T00-00-00-000Z$/);
      assert.equal(readFileSync(join(dir, names[1]!), 'utf8'), garbage);
      assert.ok(log.lines.some((l) => l.level === 'warning' && /corrupt/.test(l.message) && /moved it to/.test(l.message)));
      assert.equal(JSON.parse(readFileSync(join(dir, 'tables.json'), 'utf8')).connections.u1.table, 1000);
    }
  });

  test('stored tables outside the configured range are dropped', () => {
    let a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: () => false, now });
    a.assign([fact('wan1', 'u1')]);
    a = new TableAllocator({ config: config({ tableRange: { first: 5000, last: 5009 } }), log: memoryLog(), tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1')])), { wan1: 5000 });
  });

  test('an unwritable state directory is a typed error at start', () => {
    // Root passes permission bits; no one may create files in a sysfs directory.
    const root = process.getuid?.() === 0;
    if (!root) chmodSync(dir, 0o500);
    const stateDirectory = root ? '/sys/kernel' : dir;
    assert.throws(() => new TableAllocator({ config: config({ stateDirectory }), log: memoryLog(), tableInUse: () => false, now }),
      (e: unknown) => e instanceof StateDirectoryError && e.message.includes(stateDirectory) && /EACCES/.test(e.message));
  });

  test('a state directory that cannot be created is a typed error naming the path', () => {
    writeFileSync(join(dir, 'file'), 'x');
    const bad = join(dir, 'file', 'state');
    assert.throws(() => new TableAllocator({ config: config({ stateDirectory: bad }), log: memoryLog(), tableInUse: () => false, now }),
      (e: unknown) => e instanceof StateDirectoryError && e.code === 'StateDirectoryUnwritable' && e.message.includes(bad) && /ENOTDIR/.test(e.message));
    assert.ok(!existsSync(bad));
  });

  test('the same profile on two devices at once gets two tables; loopback and duplicates ignored', () => {
    const a = new TableAllocator({ config: config(), log: memoryLog(), tableInUse: () => false, now });
    assert.deepEqual(tables(a.assign([fact('wan1', 'u1'), fact('wan2', 'u1'), fact('lo', 'l', { deviceType: 'loopback' }), fact('wan1', 'u9')])), { wan1: 1000, wan2: 1001 });
  });
});
