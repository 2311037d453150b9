// Command line + config file → Config: every option and key, precedence, DynMHS's
// own example files, and every bad input with its error class, exit code and message.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  ConfigFileError, EXIT, UsageError, exitCodeOf, packageVersion, parseCommandLine, type CommandLine,
} from '../../src/config/parse';
import type { Config } from '../../src/config/types';
import { projectFor } from '../helpers/reachable';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'config');
const fixture = (name: string): string => path.join(FIXTURES, name);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dynmhs-config-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileCounter = 0;
/** Writes a config file into the temp dir and returns its path. */
function writeConfig(content: string | Buffer): string {
  const file = path.join(tmp, `c${++fileCounter}.conf`);
  fs.writeFileSync(file, content);
  return file;
}

function run(argv: readonly string[]): Config {
  const result: CommandLine = parseCommandLine(argv);
  assert.equal(result.kind, 'run');
  return (result as Extract<CommandLine, { kind: 'run' }>).config;
}

type ErrorClass = typeof UsageError | typeof ConfigFileError;

/** Asserts the class, the exit code, one line, and that every fragment is in the message. */
function rejects(argv: readonly string[], cls: ErrorClass, ...fragments: string[]): string {
  let message = '';
  assert.throws(() => parseCommandLine(argv), (error: unknown) => {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${String(error)}`);
    assert.equal(error.exitCode, cls === UsageError ? EXIT.USAGE : EXIT.CONFIG);
    assert.equal(exitCodeOf(error), error.exitCode);
    message = error.message;
    assert.ok(!message.includes('\n'), `message is one line: ${message}`);
    for (const f of fragments) assert.ok(message.includes(f), `message ${JSON.stringify(message)} should contain ${JSON.stringify(f)}`);
    return true;
  });
  return message;
}
const usage = (argv: readonly string[], ...fragments: string[]): string => rejects(argv, UsageError, ...fragments);
const configError = (argv: readonly string[], ...fragments: string[]): string => rejects(argv, ConfigFileError, ...fragments);

describe('exit codes', () => {
  it('--service is a command-line flag only, off unless given', () => {
    const on = parseCommandLine(['--service', '-N', 'eth0:2000']);
    const off = parseCommandLine(['-N', 'eth0:2000']);
    assert.equal(on.kind === 'run' && on.config.service, true);
    assert.equal(off.kind === 'run' && off.config.service, undefined);
    assert.throws(() => parseCommandLine(['--service=yes', '-N', 'eth0:2000']), /takes no value/);
  });
  it('are the sysexits values', () => {
    assert.deepEqual(EXIT, { OK: 0, USAGE: 64, CONFIG: 78, CANTCREAT: 73, UNAVAILABLE: 69, NOPERM: 77, SOFTWARE: 70 });
    assert.equal(new UsageError('x').exitCode, 64);
    assert.equal(new ConfigFileError('x').exitCode, 78);
    assert.equal(exitCodeOf(new Error('x')), 70);
  });
});

describe('defaults', () => {
  it('gives DynMHS behaviour plus the documented defaults for the new settings', () => {
    assert.deepEqual(run(['--network', 'eth0:2000']), {
      networks: [{ match: 'interface', value: 'eth0', table: 2000, definedAt: '--network' }],
      logLevel: 2,
      logColor: true,
      source: 'static',
      include: [],
      exclude: [],
      tableRange: { first: 10000, last: 19999 },
      stateDirectory: '/var/lib/dynmhs',
      tableIdleSeconds: 86400,
      dbus: true,
    });
  });
});

describe('--network and its spellings', () => {
  it('accepts --network X, --network=X, -N X, -NX, -network X and repeats in order', () => {
    const c = run(['--network', 'a:1000', '--network=b:1001', '-N', 'c:1002', '-Nd:1003', '-network', 'e:1004']);
    assert.deepEqual(c.networks.map((n) => [n.value, n.table, n.definedAt]), [
      ['a', 1000, '--network'], ['b', 1001, '--network'], ['c', 1002, '--network'], ['d', 1003, '--network'], ['e', 1004, '--network'],
    ]);
  });
  it('accepts the deprecated --interface / -I alias', () => {
    const c = run(['--interface', 'enp0s8:2000', '-I', 'enp0s9:3000']);
    assert.deepEqual(c.networks.map((n) => [n.match, n.value, n.table, n.definedAt]), [
      ['interface', 'enp0s8', 2000, '--interface'], ['interface', 'enp0s9', 3000, '--interface'],
    ]);
  });
  it('accepts the DynMHS README command line', () => {
    const c = run(['--network', 'enp0s8:2000', '--network', 'enp0s9:3000', '--loglevel', '2']);
    assert.deepEqual(c.networks.map((n) => `${n.value}:${n.table}`), ['enp0s8:2000', 'enp0s9:3000']);
    assert.equal(c.logLevel, 2);
  });
  it('accepts the table limits 1000 and 29999', () => {
    assert.deepEqual(run(['-N', 'a:1000', '-N', 'b:29999']).networks.map((n) => n.table), [1000, 29999]);
  });
  it('accepts a 15-byte interface name', () => {
    assert.equal(run(['-N', 'abcdefghijklmno:2000']).networks[0]!.value, 'abcdefghijklmno');
  });
});

describe('KIND:VALUE:TABLE mappings', () => {
  it('maps uuid, id, type and interface', () => {
    const c = run([
      '-N', 'uuid:0B5C1E2A-3F4D-4E5F-8A9B-0C1D2E3F4A5B:2000',
      '-N', 'id:Home WiFi:3000',
      '-N', 'type:gsm:4000',
      '-N', 'interface:wan1:5000',
    ]);
    assert.deepEqual(c.networks.map((n) => [n.match, n.value, n.table]), [
      ['uuid', '0b5c1e2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b', 2000],
      ['id', 'Home WiFi', 3000],
      ['type', 'gsm', 4000],
      ['interface', 'wan1', 5000],
    ]);
  });
  it('keeps colons inside the value: first segment is the kind, last the table', () => {
    assert.deepEqual(run(['-N', 'id:Office:Floor 2::x:6000']).networks[0], {
      match: 'id', value: 'Office:Floor 2::x', table: 6000, definedAt: '--network',
    });
  });
  it('rejects an unknown kind, naming the accepted ones', () => {
    usage(['-N', 'foo:bar:2000'], '-N "foo:bar:2000"', 'unknown kind "foo"', 'interface|uuid|id|type');
  });
  it('rejects an interface value with a colon', () => {
    usage(['-N', 'interface:a:b:2000'], '"interface:a:b:2000"', "':'");
  });
  it('rejects empty and malformed values', () => {
    usage(['-N', 'id::2000'], 'empty connection id');
    usage(['-N', 'uuid:not a uuid:2000'], 'uuid "not a uuid"');
    usage(['-N', 'type::2000'], 'device type ""');
    usage(['-N', 'interface::2000'], 'empty interface name');
  });
});

describe('bad mappings on the command line', () => {
  it('rejects IF without a table', () => {
    usage(['--network', 'wan1'], '--network "wan1"', 'expected IF:TABLE', 'eth0:2000');
    usage(['--network', 'wan1:'], '--network "wan1:"', 'no table');
  });
  for (const table of ['2000x', '4294969296', '-1', '1e3', ' 2000', '2000 ', '+2000', '0x7d0', '999', '30000', '0']) {
    it(`rejects table ${JSON.stringify(table)}`, () => {
      usage(['--network', `wan1:${table}`], `--network "wan1:${table}"`, '1000-29999');
    });
  }
  it('says "out of range" for a number outside 1000-29999 and "not a plain decimal number" otherwise', () => {
    usage(['-N', 'wan1:4294969296'], 'out of range');
    usage(['-N', 'wan1:1e3'], 'not a plain decimal number');
  });
  it('rejects an empty interface name', () => {
    usage(['--network', ':2000'], '--network ":2000"', 'empty interface name');
    usage(['--network', ''], '--network ""');
  });
  for (const name of ['abcdefghijklmnop', 'a/b', '.', '..', 'et h0', 'eth0\t', 'ab\u00e9cdefghijklmn']) {
    it(`rejects the invalid Linux interface name ${JSON.stringify(name)}`, () => {
      usage(['-N', `${name}:2000`], `-N "${name.replace('\t', '\\x09')}:2000"`, 'interface name');
    });
  }
  it('rejects the same interface twice, naming both places', () => {
    usage(['-N', 'eth0:2000', '-N', 'eth0:3000'], '-N "eth0:3000"', 'interface "eth0" is already mapped to table 2000 at --network');
  });
  it('rejects the same connection id / uuid / type twice', () => {
    usage(['-N', 'id:Home:2000', '-N', 'id:Home:3000'], 'connection id "Home"');
    usage(['-N', 'uuid:AB-cd:2000', '-N', 'uuid:ab-CD:3000'], 'connection uuid "ab-cd"');
    usage(['-N', 'type:gsm:2000', '-N', 'type:GSM:3000'], 'device type "gsm"');
  });
  it('allows the same text under different kinds', () => {
    assert.equal(run(['-N', 'wan1:2000', '-N', 'id:wan1:3000']).networks.length, 2);
  });
  it('rejects two mappings on one table', () => {
    usage(['-N', 'eth0:2000', '-N', 'eth1:2000'], '-N "eth1:2000"', 'table 2000 is already used by interface "eth0"', 'own table');
  });
});

describe('logging options', () => {
  for (const level of [0, 1, 2, 3, 4, 5]) {
    it(`--loglevel ${level}`, () => {
      assert.equal(run(['-N', 'e:2000', '--loglevel', String(level)]).logLevel, level);
      assert.equal(run(['-N', 'e:2000', `-L${level}`]).logLevel, level);
      assert.equal(run(['-N', 'e:2000', `--loglevel=${level}`]).logLevel, level);
    });
  }
  for (const bad of ['6', '-1', 'info', '02', '']) {
    it(`rejects --loglevel ${JSON.stringify(bad)}`, () => {
      usage(['-N', 'e:2000', '--loglevel', bad], `--loglevel "${bad}"`, '0..5', '0 trace');
    });
  }
  it('--verbose is trace, --quiet / -q is warning, the last one wins', () => {
    assert.equal(run(['-N', 'e:2000', '--verbose']).logLevel, 0);
    assert.equal(run(['-N', 'e:2000', '--quiet']).logLevel, 3);
    assert.equal(run(['-N', 'e:2000', '-q']).logLevel, 3);
    assert.equal(run(['-N', 'e:2000', '--verbose', '--loglevel', '4']).logLevel, 4);
    assert.equal(run(['-N', 'e:2000', '--loglevel', '4', '--verbose']).logLevel, 0);
  });
  it('--logfile / -O', () => {
    assert.equal(run(['-N', 'e:2000', '--logfile', '/var/log/dynmhs.log']).logFile, '/var/log/dynmhs.log');
    assert.equal(run(['-N', 'e:2000', '-O', 'rel.log']).logFile, 'rel.log');
    assert.equal(run(['-N', 'e:2000']).logFile, undefined);
    usage(['-N', 'e:2000', '--logfile='], '--logfile ""', 'file name');
  });
  for (const [word, value] of [['on', true], ['ON', true], ['true', true], ['1', true], ['yes', true],
    ['off', false], ['Off', false], ['false', false], ['0', false], ['no', false]] as const) {
    it(`--logcolor ${word}`, () => {
      assert.equal(run(['-N', 'e:2000', '--logcolor', word]).logColor, value);
      assert.equal(run(['-N', 'e:2000', '-Z', word]).logColor, value);
    });
  }
  it('rejects a bad --logcolor', () => {
    usage(['-N', 'e:2000', '--logcolor', 'maybe'], '--logcolor "maybe"', 'on|off');
    usage(['-N', 'e:2000', '--logcolor'], '--logcolor: missing argument');
  });
});

describe('help and version', () => {
  it('--help / -h returns the help text listing every option', () => {
    for (const flag of ['--help', '-h']) {
      const result = parseCommandLine([flag]);
      assert.equal(result.kind, 'help');
      const text = (result as { text: string }).text;
      for (const option of ['--network', '-N', '--interface', '--config', '--loglevel', '--logfile', '--logcolor',
        '--verbose', '--quiet', '--version', '--source', '--include', '--exclude', '--table-range',
        '--state-directory', '--table-idle', '--no-dbus']) {
        assert.ok(text.includes(option), `help mentions ${option}`);
      }
    }
  });
  it('--help wins over bad option values and a missing config file', () => {
    assert.equal(parseCommandLine(['-N', 'bad', '--config', '/nonexistent', '--help']).kind, 'help');
  });
  it('--version / -v returns the package version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
    assert.equal(packageVersion(), pkg.version);
    for (const flag of ['--version', '-v']) {
      const result = parseCommandLine([flag]);
      assert.equal(result.kind, 'version');
      assert.ok((result as { text: string }).text.startsWith(`dynmhs ${pkg.version}`));
    }
  });
});

describe('source, selectors and table allocation options', () => {
  for (const source of ['static', 'networkmanager', 'networkd', 'auto'] as const) {
    it(`--source ${source}`, () => {
      assert.equal(run(['-N', 'e:2000', '--source', source]).source, source);
    });
  }
  it('rejects an unknown source', () => {
    usage(['--source', 'nm'], '--source "nm"', 'static|networkmanager|networkd|auto');
  });
  it('allows no networks with a non-static source', () => {
    assert.deepEqual(run(['--source', 'networkmanager']).networks, []);
  });
  it('--include / --exclude are repeatable KIND:VALUE selectors', () => {
    const c = run(['--source', 'auto', '--include', 'type:ethernet', '--include', 'id:Home:WiFi',
      '--exclude', 'type:WireGuard', '--exclude', 'interface:tun0', '--exclude', 'uuid:ABC-1']);
    assert.deepEqual(c.include, [{ match: 'type', value: 'ethernet' }, { match: 'id', value: 'Home:WiFi' }]);
    assert.deepEqual(c.exclude, [{ match: 'type', value: 'wireguard' }, { match: 'interface', value: 'tun0' }, { match: 'uuid', value: 'abc-1' }]);
  });
  for (const bad of ['eth0', 'foo:bar', 'interface:', 'interface:a/b', 'uuid:xyz!', 'type:', 'id:']) {
    it(`rejects the selector ${JSON.stringify(bad)}`, () => {
      usage(['--source', 'auto', '--exclude', bad], `--exclude "${bad}"`);
    });
  }
  it('names the accepted selector syntax', () => {
    usage(['--source', 'auto', '--include', 'eth0'], 'expected KIND:VALUE', 'interface|uuid|id|type');
  });
  it('--table-range FIRST-LAST', () => {
    assert.deepEqual(run(['-N', 'e:2000', '--table-range', '20000-20999']).tableRange, { first: 20000, last: 20999 });
    assert.deepEqual(run(['-N', 'e:2000', '--table-range', '5000-5000']).tableRange, { first: 5000, last: 5000 });
  });
  it('rejects an empty table range', () => {
    usage(['-N', 'e:2000', '--table-range', '20000-10000'], '--table-range "20000-10000"', 'empty');
  });
  for (const bad of ['500-2000', '1000-30000', '999-999', '30000-30001']) {
    it(`rejects the table range ${bad} outside 1000-29999`, () => {
      usage(['-N', 'e:2000', '--table-range', bad], `--table-range "${bad}"`, 'outside 1000-29999');
    });
  }
  for (const bad of ['10000', '10000 - 19999', 'a-b', '-5', '10000-']) {
    it(`rejects the table range syntax ${JSON.stringify(bad)}`, () => {
      usage(['-N', 'e:2000', `--table-range=${bad}`], 'expected FIRST-LAST');
    });
  }
  it('rejects a table range overlapping an explicit mapping', () => {
    usage(['-N', 'eth0:2000', '--table-range', '1000-2999'], '--table-range "1000-2999"', 'overlaps table 2000 mapped at --network');
  });
  it('rejects a mapping inside the default range when tables are allocated automatically', () => {
    usage(['-N', 'eth0:15000', '--source', 'auto'], '-N "eth0:15000"', 'default automatic table range 10000-19999', '--table-range');
  });
  it('keeps a DynMHS static setup with a table inside the default range valid', () => {
    assert.equal(run(['-N', 'eth0:15000']).networks[0]!.table, 15000);
  });
  it('--state-directory', () => {
    assert.equal(run(['-N', 'e:2000', '--state-directory', '/tmp/state']).stateDirectory, '/tmp/state');
    usage(['-N', 'e:2000', '--state-directory', 'state'], '--state-directory "state"', 'absolute');
  });
  it('--table-idle', () => {
    assert.equal(run(['-N', 'e:2000', '--table-idle', '3600']).tableIdleSeconds, 3600);
    assert.equal(run(['-N', 'e:2000', '--table-idle', '0']).tableIdleSeconds, 0);
    for (const bad of ['abc', '1.5', '-1', '1d', '']) {
      usage(['-N', 'e:2000', '--table-idle', bad], `--table-idle "${bad}"`, 'whole number of seconds');
    }
  });
  it('--no-dbus', () => {
    assert.equal(run(['-N', 'e:2000', '--no-dbus']).dbus, false);
  });
});

describe('command line syntax errors', () => {
  it('rejects an unknown option', () => {
    usage(['-N', 'e:2000', '--bogus'], '--bogus', 'unknown option');
    usage(['-N', 'e:2000', '--bogus=1'], '--bogus', 'unknown option');
    usage(['-X'], '-X', 'unknown option');
    usage(['-hv'], '-hv', 'unknown option');
  });
  it('rejects a missing option argument', () => {
    usage(['--network'], '--network: missing argument', 'IF:TABLE');
    usage(['-N'], '-N: missing argument');
    usage(['--network', '--loglevel', '2'], '--network: missing argument');
    usage(['-N', 'e:2000', '--config'], '--config: missing argument', 'FILE');
  });
  it('rejects a value for a flag', () => {
    usage(['-N', 'e:2000', '--verbose=1'], '--verbose', 'takes no value');
  });
  it('rejects positional arguments', () => {
    usage(['eth0:2000'], '"eth0:2000"', 'unexpected argument');
    usage(['-N', 'e:2000', '--', 'x'], '"x"', 'unexpected argument');
  });
  it('accepts an unambiguous prefix of a long option and rejects an ambiguous one', () => {
    assert.equal(run(['--net', 'e:2000', '--verb']).logLevel, 0);
    usage(['--log', '2'], '--log', 'ambiguous', '--loglevel', '--logfile', '--logcolor');
  });
  it('says how to give networks when there are none', () => {
    usage([], 'no networks given', '--network IF:TABLE', '--config FILE');
    usage(['--loglevel', '2'], 'no networks given');
  });
});

describe("DynMHS's own example config files", () => {
  it('accepts the README example (repeated NETWORK=, LOGCOLOR=ON, commented LOGFILE)', () => {
    const file = fixture('dynmhs-readme.conf');
    const c = run(['--config', file]);
    assert.deepEqual(c.networks, [
      { match: 'interface', value: 'enp0s8', table: 2000, definedAt: `${file}:12` },
      { match: 'interface', value: 'enp0s9', table: 3000, definedAt: `${file}:13` },
    ]);
    assert.equal(c.logLevel, 2);
    assert.equal(c.logColor, true);
    assert.equal(c.logFile, undefined);
    assert.equal(c.configFile, file);
  });
  it('accepts the legacy example (NETWORK1..NETWORK5 with empty values)', () => {
    const file = fixture('dynmhs-legacy.conf');
    const c = run(['-C', file]);
    assert.deepEqual(c.networks, [
      { match: 'interface', value: 'enp0s8', table: 2000, definedAt: `${file}:5` },
      { match: 'interface', value: 'enp0s9', table: 3000, definedAt: `${file}:6` },
    ]);
    assert.equal(c.logLevel, 2);
  });
  it("accepts the shipped dynmhs.conf's format (NETWORK=\"\" placeholder)", () => {
    const c = run(['--config', fixture('dynmhs-empty-network.conf')]);
    assert.deepEqual(c.networks.map((n) => `${n.value}:${n.table}`), ['enp0s3:1000', 'enp0s8:2000', 'enp0s9:3000', 'enp0s10:4000']);
    assert.equal(c.logLevel, 0);
  });
  it('rejects the README command line plus the README file: the same interface twice', () => {
    configError(['--network', 'enp0s8:2000', '--config', fixture('dynmhs-readme.conf')],
      `${fixture('dynmhs-readme.conf')}:12`, 'interface "enp0s8" is already mapped to table 2000 at --network');
  });
});

describe('config file keys', () => {
  it('reads every key of the full example', () => {
    const file = fixture('dynmhs-full.conf');
    const c = run(['--config', file]);
    assert.deepEqual(c, {
      networks: [
        { match: 'interface', value: 'wan1', table: 2000, definedAt: `${file}:6` },
        { match: 'id', value: 'Home WiFi', table: 3000, definedAt: `${file}:7` },
        { match: 'uuid', value: '0b5c1e2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b', table: 4000, definedAt: `${file}:8` },
        { match: 'type', value: 'gsm', table: 5000, definedAt: `${file}:9` },
        { match: 'id', value: 'Office:Floor 2', table: 6000, definedAt: `${file}:10` },
        { match: 'interface', value: 'wan2', table: 7000, definedAt: `${file}:11` },
      ],
      logLevel: 1,
      logFile: '/var/log/dynmhs.log',
      logColor: false,
      configFile: file,
      source: 'networkmanager',
      include: [{ match: 'type', value: 'ethernet' }, { match: 'type', value: 'wifi' }],
      exclude: [{ match: 'type', value: 'wireguard' }, { match: 'id', value: 'Guest' }],
      tableRange: { first: 20000, last: 20999 },
      stateDirectory: '/run/dynmhs',
      tableIdleSeconds: 3600,
      dbus: false,
    });
  });
  for (const [text, value] of [['ON', true], ['on', true], ['OFF', false], ['off', false], ['true', true],
    ['FALSE', false], ['1', true], ['0', false]] as const) {
    it(`LOGCOLOR=${text}`, () => {
      assert.equal(run(['-C', writeConfig(`NETWORK=e:2000\nLOGCOLOR=${text}\n`)]).logColor, value);
    });
  }
  it('DBUS=yes / no', () => {
    assert.equal(run(['-C', writeConfig('NETWORK=e:2000\nDBUS=yes\n')]).dbus, true);
    assert.equal(run(['-C', writeConfig('NETWORK=e:2000\nDBUS=no\n')]).dbus, false);
  });
  it('SOURCE= allows a file without networks', () => {
    assert.equal(run(['-C', writeConfig('SOURCE=networkd\n')]).source, 'networkd');
  });
  it('an empty value leaves a key unset', () => {
    const c = run(['-C', writeConfig('NETWORK=e:2000\nLOGLEVEL=\nLOGFILE=""\nSOURCE=\'\'\nINCLUDE=\n')]);
    assert.equal(c.logLevel, 2);
    assert.equal(c.logFile, undefined);
    assert.equal(c.source, 'static');
    assert.deepEqual(c.include, []);
  });
  it('the last occurrence of a scalar key wins', () => {
    assert.equal(run(['-C', writeConfig('NETWORK=e:2000\nLOGLEVEL=1\nLOGLEVEL=4\n')]).logLevel, 4);
  });
});

describe('config file syntax', () => {
  it('handles comments, quotes, blanks, CRLF and a BOM', () => {
    const file = writeConfig([
      '\ufeff# comment on line 1',
      '   # indented comment',
      '',
      '  NETWORK  =  "a:2000"   # trailing comment',
      "NETWORK='id:Room # 2:3000' # the # inside quotes is kept",
      'NETWORK=id:Room#3:4000',
      'NETWORK=id:Lab 5:5000 # unquoted, trailing blanks dropped   ',
      'NETWORK="id:Say \\"hi\\":6000"\r',
      'LOGLEVEL=3\r',
      '\t',
    ].join('\n'));
    const c = run(['-C', file]);
    assert.deepEqual(c.networks.map((n) => [n.value, n.table, n.definedAt]), [
      ['a', 2000, `${file}:4`],
      ['Room # 2', 3000, `${file}:5`],
      ['Room#3', 4000, `${file}:6`],
      ['Lab 5', 5000, `${file}:7`],
      ['Say "hi"', 6000, `${file}:8`],
    ]);
    assert.equal(c.logLevel, 3);
  });
  it('keeps blanks inside quotes, so a quoted " eth0" is an invalid interface name', () => {
    const file = writeConfig('NETWORK=" eth0:2000"\n');
    configError(['-C', file], `${file}:1`, 'interface name');
  });
  it('rejects an unknown key with file:line and the accepted keys', () => {
    const file = writeConfig('NETWORK=e:2000\n\nFOO=bar\n');
    configError(['-C', file], `${file}:3: unknown key "FOO"`, 'NETWORK', 'LOGLEVEL');
  });
  it('suggests the upper-case spelling of a known key', () => {
    const file = writeConfig('network=e:2000\n');
    configError(['-C', file], `${file}:1`, 'did you mean NETWORK?');
  });
  it('does not know NETWORK6 (DynMHS had NETWORK1..NETWORK5)', () => {
    const file = writeConfig('NETWORK6=e:2000\n');
    configError(['-C', file], `${file}:1: unknown key "NETWORK6"`);
  });
  it('rejects a line without "="', () => {
    const file = writeConfig('NETWORK=e:2000\nNETWORK e:3000\n');
    configError(['-C', file], `${file}:2`, 'not a KEY=VALUE line');
  });
  it('rejects a section header and ";" comments (not DynMHS syntax)', () => {
    configError(['-C', writeConfig('[main]\nNETWORK=e:2000\n')], ':1:', 'KEY=VALUE');
    configError(['-C', writeConfig('; comment\nNETWORK=e:2000\n')], ':1:', 'KEY=VALUE');
  });
  it('rejects an invalid key', () => {
    configError(['-C', writeConfig('=e:2000\n')], ':1:', 'not a valid key');
    configError(['-C', writeConfig('MY KEY=1\n')], ':1:', 'not a valid key');
  });
  it('rejects a missing closing quote', () => {
    const file = writeConfig('NETWORK="e:2000\n');
    configError(['-C', file], `${file}:1`, 'missing closing "');
  });
  it('rejects text after a closing quote', () => {
    const file = writeConfig('NETWORK="e:2000" x\n');
    configError(['-C', file], `${file}:1`, 'unexpected "x" after the closing "');
  });
});

describe('bad values in the config file name file:line', () => {
  const cases: Array<[string, string[]]> = [
    ['LOGLEVEL=7', ['LOGLEVEL="7"', '0..5']],
    ['LOGLEVEL=info', ['LOGLEVEL="info"', '0..5']],
    ['LOGCOLOR=maybe', ['LOGCOLOR="maybe"', 'on|off']],
    ['NETWORK="wan1"', ['NETWORK="wan1"', 'expected IF:TABLE']],
    ['NETWORK=wan1:2000x', ['NETWORK="wan1:2000x"', '1000-29999']],
    ['NETWORK2=wan1:4294969296', ['NETWORK2="wan1:4294969296"', 'out of range']],
    ['NETWORK=:2000', ['empty interface name']],
    ['NETWORK=abcdefghijklmnop:2000', ['longer than 15']],
    ['SOURCE=nm', ['SOURCE="nm"', 'static|networkmanager|networkd|auto']],
    ['INCLUDE=eth0', ['INCLUDE="eth0"', 'KIND:VALUE']],
    ['EXCLUDE=kind:x', ['EXCLUDE="kind:x"', 'unknown kind']],
    ['TABLE_RANGE=20000-10000', ['TABLE_RANGE="20000-10000"', 'empty']],
    ['TABLE_RANGE=100-200', ['outside 1000-29999']],
    ['TABLE_IDLE=1h', ['TABLE_IDLE="1h"', 'whole number of seconds']],
    ['STATE_DIRECTORY=var/lib', ['STATE_DIRECTORY="var/lib"', 'absolute']],
    ['DBUS=perhaps', ['DBUS="perhaps"', 'yes|no']],
  ];
  for (const [line, fragments] of cases) {
    it(line, () => {
      const file = writeConfig(`# first\nNETWORK=ok:9000\n${line}\n`);
      configError(['-C', file], `${file}:3: `, ...fragments);
    });
  }
  it('rejects a duplicate interface inside the file, naming both lines', () => {
    const file = writeConfig('NETWORK=eth0:2000\nNETWORK1=eth0:3000\n');
    configError(['-C', file], `${file}:2: NETWORK1="eth0:3000"`, `already mapped to table 2000 at ${file}:1`);
  });
  it('rejects two mappings on one table inside the file', () => {
    const file = writeConfig('NETWORK=eth0:2000\nNETWORK=eth1:2000\n');
    configError(['-C', file], `${file}:2`, 'table 2000 is already used by interface "eth0"');
  });
  it('rejects a file network on a command-line network\'s table', () => {
    const file = writeConfig('NETWORK=eth1:2000\n');
    configError(['-N', 'eth0:2000', '-C', file], `${file}:1`, 'table 2000 is already used by interface "eth0" at --network');
  });
  it('rejects a TABLE_RANGE overlapping a mapping', () => {
    const file = writeConfig('NETWORK=eth0:2000\nTABLE_RANGE=1000-9999\n');
    configError(['-C', file], `${file}:2: TABLE_RANGE="1000-9999"`, 'overlaps table 2000');
  });
  it('rejects a file mapping inside the default range when tables are allocated automatically', () => {
    const file = writeConfig('SOURCE=auto\nNETWORK=eth0:12000\n');
    configError(['-C', file], `${file}:2`, 'default automatic table range');
  });
  it('rejects a file with no networks', () => {
    const file = writeConfig('# nothing\nLOGLEVEL=2\nNETWORK=""\n');
    configError(['-C', file], `${file}: no networks configured`, 'NETWORK="IF:TABLE"');
  });
});

describe('unreadable config files', () => {
  it('rejects a missing file', () => {
    configError(['-C', path.join(tmp, 'missing.conf')], `${path.join(tmp, 'missing.conf')}: cannot read config file`, 'ENOENT');
  });
  it('rejects a directory', () => {
    configError(['-C', tmp], `${tmp}: cannot read config file`, 'directory');
  });
  it('rejects a path through a non-directory', () => {
    const file = writeConfig('NETWORK=e:2000\n');
    configError(['-C', `${file}/x`], 'ENOTDIR');
  });
  it('rejects a file the daemon may not read (run as an unprivileged user)', () => {
    const file = writeConfig('NETWORK=e:2000\n');
    fs.chmodSync(file, 0o000);
    fs.chmodSync(tmp, 0o755);
    const script = `
      const { parseCommandLine } = require(${JSON.stringify(path.join(projectFor(process.getuid?.() === 0 ? 65534 : undefined), 'dist', 'src', 'config', 'parse.js'))});
      try { parseCommandLine(['-C', ${JSON.stringify(file)}]); console.log('{}'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, exitCode: e.exitCode, message: e.message })); }`;
    const asRoot = process.getuid?.() === 0;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout) as { name: string; exitCode: number; message: string };
    assert.equal(result.name, 'ConfigFileError');
    assert.equal(result.exitCode, 78);
    assert.ok(result.message.startsWith(`${file}: cannot read config file`), result.message);
    assert.ok(result.message.includes('EACCES'), result.message);
  });
  it('rejects a NUL byte, naming its line', () => {
    const file = writeConfig(Buffer.concat([Buffer.from('NETWORK=e:2000\nLOGLEVEL=2\n'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00])]));
    configError(['-C', file], `${file}:3: binary data (NUL byte)`);
  });
  it('rejects invalid UTF-8, naming its line', () => {
    const file = writeConfig(Buffer.concat([Buffer.from('NETWORK=e:2000\n# ok\nNETWORK="id:'), Buffer.from([0xff, 0xfe]), Buffer.from(':3000"\n')]));
    configError(['-C', file], `${file}:3: invalid UTF-8`);
  });
  it('accepts valid UTF-8 beyond ASCII', () => {
    assert.equal(run(['-C', writeConfig('NETWORK="id:Café Wi-Fi:2000"\n')]).networks[0]!.value, 'Café Wi-Fi');
  });
  it('reports a command-line error before touching the file', () => {
    usage(['-N', 'bad', '-C', path.join(tmp, 'missing.conf')], '-N "bad"');
  });
});

describe('precedence', () => {
  it('command-line networks come first, then the file\'s', () => {
    const file = writeConfig('NETWORK=f1:3000\nNETWORK=f2:4000\n');
    assert.deepEqual(run(['-N', 'c1:2000', '-C', file, '-N', 'c2:2500']).networks.map((n) => [n.value, n.definedAt]), [
      ['c1', '--network'], ['c2', '--network'], ['f1', `${file}:1`], ['f2', `${file}:2`],
    ]);
  });
  it('command-line scalars override the file\'s', () => {
    const file = writeConfig([
      'NETWORK=e:2000', 'LOGLEVEL=1', 'LOGCOLOR=on', 'LOGFILE=/file.log', 'SOURCE=networkd', 'TABLE_RANGE=20000-20999',
      'STATE_DIRECTORY=/file-state', 'TABLE_IDLE=10', 'DBUS=yes',
    ].join('\n'));
    const fromFile = run(['-C', file]);
    assert.equal(fromFile.logLevel, 1);
    assert.equal(fromFile.dbus, true);
    const c = run(['-C', file, '-L', '4', '-Z', 'off', '-O', '/cli.log', '--source', 'auto', '--table-range', '21000-21999',
      '--state-directory', '/cli-state', '--table-idle', '20', '--no-dbus']);
    assert.equal(c.logLevel, 4);
    assert.equal(c.logColor, false);
    assert.equal(c.logFile, '/cli.log');
    assert.equal(c.source, 'auto');
    assert.deepEqual(c.tableRange, { first: 21000, last: 21999 });
    assert.equal(c.stateDirectory, '/cli-state');
    assert.equal(c.tableIdleSeconds, 20);
    assert.equal(c.dbus, false);
  });
  it('--verbose and --quiet override LOGLEVEL', () => {
    const file = writeConfig('NETWORK=e:2000\nLOGLEVEL=4\n');
    assert.equal(run(['-C', file, '--verbose']).logLevel, 0);
    assert.equal(run(['-C', file, '--quiet']).logLevel, 3);
  });
  it('include/exclude selectors add up, command line first', () => {
    const file = writeConfig('SOURCE=auto\nINCLUDE=type:wifi\nEXCLUDE=type:tun\n');
    const c = run(['-C', file, '--include', 'type:ethernet', '--exclude', 'id:Guest']);
    assert.deepEqual(c.include, [{ match: 'type', value: 'ethernet' }, { match: 'type', value: 'wifi' }]);
    assert.deepEqual(c.exclude, [{ match: 'id', value: 'Guest' }, { match: 'type', value: 'tun' }]);
  });
  it('a command-line table range is checked against the file\'s mappings and blamed on the command line', () => {
    const file = writeConfig('NETWORK=e:2000\n');
    usage(['-C', file, '--table-range', '1000-2000'], '--table-range "1000-2000"', `mapped at ${file}:1`);
  });
  it('the last --config wins', () => {
    const a = writeConfig('NETWORK=a:2000\n');
    const b = writeConfig('NETWORK=b:3000\n');
    assert.deepEqual(run(['-C', a, '-C', b]).networks.map((n) => n.value), ['b']);
  });
});

describe('re-reading on SIGHUP', () => {
  it('is a pure function of argv and the file content', () => {
    const file = writeConfig('NETWORK=a:2000\n');
    const argv = ['-N', 'c:1500', '--config', file];
    assert.deepEqual(run(argv), run(argv));
    fs.writeFileSync(file, 'NETWORK=a:2000\nNETWORK=b:3000\nLOGLEVEL=0\n');
    const reread = run(argv);
    assert.deepEqual(reread.networks.map((n) => n.value), ['c', 'a', 'b']);
    assert.equal(reread.logLevel, 0);
    fs.writeFileSync(file, 'NETWORK=a:x\n');
    configError(argv, `${file}:1`);
  });
});

describe('messages quote at most a short prefix of a value', () => {
  const MiB = 1024 * 1024;
  const huge = 'x'.repeat(MiB);
  /** Well above what any message needs for its own words, far below the value's size. */
  const BOUND = 500;
  const DAEMON = path.join(__dirname, '..', '..', 'src', 'main.js');

  it('a 1 MiB config line: the message names file:line and shows a prefix only', () => {
    const lines = [
      `NETWORK="${huge}:2000"`, `NETWORK=eth0:${'9'.repeat(MiB)}`, `NETWORK="type:${huge}!:2000"`,
      huge, `${huge}=1`, `X${huge}=1`, `LOGLEVEL="2" ${huge}`, `SOURCE=${huge}`,
    ];
    for (const line of lines) {
      const file = writeConfig(`LOGLEVEL=2\n${line}\n`);
      const message = configError(['-C', file], `${file}:2: `);
      assert.ok(message.length < BOUND, `${message.length} characters for a line of ${line.length}: ${message.slice(0, 300)}`);
      assert.ok(message.includes('xxx…') || message.includes('999…'), message.slice(0, 300));
    }
  });

  it('long command-line arguments: the message names the option and shows a prefix only', () => {
    const long = 'y'.repeat(100_000);
    for (const argv of [['--network', `${long}:2000`], ['-N', `eth0:${'7'.repeat(100_000)}`], [`--${long}`], [`--no-dbus=${long}`],
      [long], ['--', long], ['--loglevel', long], ['--include', `id:${long}:x`], ['--source', long], [`-L${long}`]]) {
      const message = usage(argv);
      assert.ok(message.length < BOUND, `${message.length} characters for ${argv[0].slice(0, 20)}: ${message.slice(0, 300)}`);
    }
  });

  it("the daemon's own stderr stays short, for a file, an argument, a config path and a log file path", () => {
    const file = writeConfig(`NETWORK="${huge}:2000"\n`);
    const longPath = `/${'q'.repeat(100_000)}`;
    const cases: Array<[string[], number]> = [
      [['--config', file], EXIT.CONFIG],
      [['--network', `${'z'.repeat(100_000)}:2000`], EXIT.USAGE],
      [['--config', longPath], EXIT.CONFIG],
      [['--network', 'eth0:2000', '--logfile', longPath], 73],
    ];
    for (const [argv, exitCode] of cases) {
      // As root, in a network namespace of its own: a daemon that wrongly started could not
      // touch this host's routes there.
      const command = process.getuid?.() === 0 ? ['unshare', '--net', process.execPath] : [process.execPath];
      const child = spawnSync(command[0], [...command.slice(1), DAEMON, ...argv, '--no-dbus'], { encoding: 'utf8', maxBuffer: 8 * MiB, timeout: 10_000 });
      assert.equal(child.status, exitCode, child.stderr.slice(0, 300));
      assert.ok(child.stderr.length < BOUND, `${child.stderr.length} bytes of stderr: ${child.stderr.slice(0, 300)}`);
      if (argv[1] === file) assert.ok(child.stderr.includes(`${file}:1: `), child.stderr);
    }
  });

});
