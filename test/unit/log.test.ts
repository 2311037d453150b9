// The winston logger: level filtering, live level changes, line shapes on a TTY, a
// pipe and the journal, colour rules, the log file and an unwritable log file.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { createLogger, formatTimestamp, LogFileError, writesToJournal, type LoggerOptions, type LogStream } from '../../src/log';
import type { LogLevel } from '../../src/config/types';
import { projectFor } from '../helpers/reachable';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dynmhs-log-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const NOW = new Date(2025, 1, 28, 13, 59, 50, 422);
const STAMP = '2025-02-28 13:59:50.422';
const LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'fatal'] as const;

/** A capturing console stream; `tty` makes it look like a terminal. */
function capture(tty = false): { stream: LogStream; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  if (tty) Object.assign(stream, { isTTY: true });
  return { stream, text: () => text };
}

function logger(overrides: Partial<LoggerOptions> & { tty?: boolean } = {}) {
  const out = capture(overrides.tty ?? false);
  const log = createLogger({ level: 0, color: false, env: {}, now: () => NOW, stream: out.stream, ...overrides });
  return { log, out };
}

function logAll(log: ReturnType<typeof createLogger>, suffix = ''): void {
  for (const name of LEVELS) log[name](`${name} message${suffix}`);
}

describe('timestamps', () => {
  it('formats local time as YYYY-MM-DD HH:MM:SS.mmm', () => {
    assert.equal(formatTimestamp(NOW), STAMP);
    assert.equal(formatTimestamp(new Date(2025, 0, 2, 3, 4, 5, 6)), '2025-01-02 03:04:05.006');
  });
});

describe('level filtering', () => {
  for (const level of [0, 1, 2, 3, 4, 5] as LogLevel[]) {
    it(`level ${level} (${LEVELS[level]}) shows only ${LEVELS.slice(level).join(', ')}`, async () => {
      const { log, out } = logger({ level });
      logAll(log);
      await log.close();
      assert.equal(out.text(), LEVELS.slice(level).map((name) => `${STAMP} [${name}] ${name} message\n`).join(''));
    });
  }
  it('setLevel changes the level live', async () => {
    const { log, out } = logger({ level: 2 });
    assert.equal(log.level(), 2);
    log.debug('hidden');
    log.setLevel(0);
    assert.equal(log.level(), 0);
    log.trace('shown');
    log.setLevel(4);
    log.warning('hidden too');
    log.error('shown too');
    await log.close();
    assert.equal(out.text(), `${STAMP} [trace] shown\n${STAMP} [error] shown too\n`);
  });
});

describe('console line shapes', () => {
  it('a pipe gets timestamped plain lines without colour, even with colour on', async () => {
    const { log, out } = logger({ color: true, tty: false });
    logAll(log);
    await log.close();
    assert.ok(!out.text().includes('\x1b'), out.text());
    assert.equal(out.text().split('\n')[0], `${STAMP} [trace] trace message`);
  });
  it('a terminal with colour on gets ANSI colours per level', async () => {
    const { log, out } = logger({ color: true, tty: true });
    logAll(log);
    await log.close();
    const lines = out.text().trimEnd().split('\n');
    assert.equal(lines.length, 6);
    assert.equal(lines[2], `${STAMP} \x1b[32m[info] info message\x1b[0m`);
    assert.equal(lines[3], `${STAMP} \x1b[33m[warning] warning message\x1b[0m`);
    assert.equal(lines[4], `${STAMP} \x1b[31m[error] error message\x1b[0m`);
    for (const line of lines) assert.match(line, /\x1b\[[0-9;]+m\[\w+\] \w+ message\x1b\[0m$/);
  });
  it('a terminal with colour off gets no colour', async () => {
    const { log, out } = logger({ color: false, tty: true });
    logAll(log);
    await log.close();
    assert.ok(!out.text().includes('\x1b'));
  });
  it('under systemd (not a TTY, JOURNAL_STREAM set) prefixes the syslog priority, without timestamp or colour', async () => {
    const { log, out } = logger({ color: true, env: { JOURNAL_STREAM: '8:12345' } });
    logAll(log);
    await log.close();
    assert.equal(out.text(), [
      '<7>trace message', '<7>debug message', '<6>info message', '<4>warning message', '<3>error message', '<2>fatal message', '',
    ].join('\n'));
  });
  it('under systemd every line of a multi-line message keeps its priority', async () => {
    const { log, out } = logger({ env: { JOURNAL_STREAM: '8:12345' } });
    log.warning('first\nsecond');
    await log.close();
    assert.equal(out.text(), '<4>first\n<4>second\n');
  });
  it('a terminal is never treated as the journal', async () => {
    const { log, out } = logger({ color: false, tty: true, env: { JOURNAL_STREAM: '8:12345' } });
    log.info('hello');
    await log.close();
    assert.equal(out.text(), `${STAMP} [info] hello\n`);
  });
});

describe('journal detection', () => {
  it('needs JOURNAL_STREAM and no TTY', () => {
    const pipe = capture().stream;
    assert.equal(writesToJournal(pipe, {}), false);
    assert.equal(writesToJournal(pipe, { JOURNAL_STREAM: '' }), false);
    assert.equal(writesToJournal(pipe, { JOURNAL_STREAM: '1:2' }), true);
    assert.equal(writesToJournal(capture(true).stream, { JOURNAL_STREAM: '1:2' }), false);
  });
  it('with a real file descriptor, checks that it is the journal stream (an inherited variable is not enough)', async () => {
    const file = path.join(tmp, 'fd-check.log');
    const fd = fs.openSync(file, 'a');
    const stream = fs.createWriteStream(file, { fd });
    const stat = fs.fstatSync(fd, { bigint: true });
    assert.equal(writesToJournal(stream, { JOURNAL_STREAM: `${stat.dev}:${stat.ino}` }), true);
    assert.equal(writesToJournal(stream, { JOURNAL_STREAM: `${stat.dev}:${stat.ino + 1n}` }), false);
    await new Promise((resolve) => stream.end(resolve));
  });
});

describe('log file', () => {
  it('appends plain timestamped lines, keeps earlier content, and close() flushes', async () => {
    const file = path.join(tmp, 'append.log');
    fs.writeFileSync(file, 'earlier line\n');
    const { log, out } = logger({ file, level: 1, color: true, tty: true });
    logAll(log);
    await log.close();
    assert.equal(fs.readFileSync(file, 'utf8'), 'earlier line\n'
      + LEVELS.slice(1).map((name) => `${STAMP} [${name}] ${name} message\n`).join(''));
    assert.ok(out.text().includes('\x1b'), 'the terminal still gets colour');
  });
  it('uses timestamps in the file even when the console goes to the journal', async () => {
    const file = path.join(tmp, 'journal.log');
    const { log, out } = logger({ file, env: { JOURNAL_STREAM: '8:1' } });
    log.info('hello');
    await log.close();
    assert.equal(out.text(), '<6>hello\n');
    assert.equal(fs.readFileSync(file, 'utf8'), `${STAMP} [info] hello\n`);
  });
  it('creates the file when the logger is created', async () => {
    const file = path.join(tmp, 'created.log');
    const { log } = logger({ file });
    assert.ok(fs.existsSync(file));
    await log.close();
  });
  it('follows live level changes too', async () => {
    const file = path.join(tmp, 'level.log');
    const { log } = logger({ file, level: 4 });
    log.info('no');
    log.setLevel(2);
    log.info('yes');
    await log.close();
    assert.equal(fs.readFileSync(file, 'utf8'), `${STAMP} [info] yes\n`);
  });
  it('close() is idempotent and later messages are dropped', async () => {
    const file = path.join(tmp, 'closed.log');
    const { log, out } = logger({ file });
    log.info('before');
    await log.close();
    log.error('after');
    await log.close();
    assert.equal(fs.readFileSync(file, 'utf8'), `${STAMP} [info] before\n`);
    assert.equal(out.text(), `${STAMP} [info] before\n`);
  });
});

describe('unwritable log file', () => {
  function assertLogFileError(file: string, ...fragments: string[]): void {
    const out = capture();
    assert.throws(() => createLogger({ level: 0, color: false, file, stream: out.stream, env: {} }), (error: unknown) => {
      assert.ok(error instanceof LogFileError);
      assert.equal(error.exitCode, 73);
      assert.equal(error.file, file);
      assert.ok(error.message.includes(`"${file}"`), error.message);
      assert.ok(!error.message.includes('\n'));
      for (const f of fragments) assert.ok(error.message.includes(f), `${error.message} should contain ${f}`);
      return true;
    });
    assert.equal(out.text(), '', 'nothing is written before the error');
  }
  it('a missing directory', () => {
    assertLogFileError(path.join(tmp, 'no-such-dir', 'dynmhs.log'), 'ENOENT', 'does not exist');
  });
  it('a directory', () => {
    assertLogFileError(tmp, 'EISDIR', 'directory');
  });
  it('a path through a regular file', () => {
    const file = path.join(tmp, 'plain');
    fs.writeFileSync(file, '');
    assertLogFileError(path.join(file, 'dynmhs.log'), 'ENOTDIR');
  });
  it('a file the daemon may not write (run as an unprivileged user)', () => {
    const dir = path.join(tmp, 'readonly');
    fs.mkdirSync(dir, { mode: 0o555 });
    fs.chmodSync(tmp, 0o755);
    const file = path.join(dir, 'dynmhs.log');
    const script = `
      const { createLogger } = require(${JSON.stringify(path.join(projectFor(process.getuid?.() === 0 ? 65534 : undefined), 'dist', 'src', 'log.js'))});
      try { createLogger({ level: 2, color: false, file: ${JSON.stringify(file)} }); console.log('{}'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, exitCode: e.exitCode, code: e.code, message: e.message })); }`;
    const asRoot = process.getuid?.() === 0;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout) as { name: string; exitCode: number; code: string; message: string };
    assert.deepEqual([result.name, result.exitCode, result.code], ['LogFileError', 73, 'EACCES']);
    assert.ok(result.message.includes(file), result.message);
    assert.ok(!fs.existsSync(file));
  });
});

describe('queued until start-up is done (queueUntil)', () => {
  const stampOf = (ms: number): Date => new Date(2025, 1, 28, 13, 59, 50, ms);

  it('info waits, keeps the time it was logged at, and is written once the promise settles', async () => {
    let release = (): void => undefined;
    const queueUntil = new Promise<void>((resolve) => { release = resolve; });
    let clock = 100;
    const { log, out } = logger({ level: 1, queueUntil, now: () => stampOf(clock) });
    log.info('first');
    clock = 200;
    log.debug('second');
    log.trace('below the level: dropped');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(out.text(), '', 'nothing before the promise settles');
    clock = 900;
    release();
    await queueUntil;
    log.info('third');
    await log.close();
    assert.equal(out.text(), [
      '2025-02-28 13:59:50.100 [info] first',
      '2025-02-28 13:59:50.200 [debug] second',
      '2025-02-28 13:59:50.900 [info] third',
      '',
    ].join('\n'));
  });

  it('a warning is written at once, after what was queued before it; close() writes the queue', async () => {
    const { log, out } = logger({ level: 2, queueUntil: new Promise(() => undefined) });
    log.info('queued');
    log.warning('urgent');
    log.info('after');
    await log.close();
    assert.equal(out.text(), `${STAMP} [info] queued\n${STAMP} [warning] urgent\n${STAMP} [info] after\n`);
  });

  it('exiting before the promise settles still writes the queue, to the console and the file', () => {
    const file = path.join(tmp, 'queued-exit.log');
    const script = `
      const { createLogger } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'log.js'))});
      const log = createLogger({ level: 2, color: false, file: ${JSON.stringify(file)}, env: {}, queueUntil: new Promise(() => {}) });
      log.info('logged just before an exit');
      process.exit(3);`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 3, child.stderr);
    assert.match(child.stdout, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[info\] logged just before an exit\n$/);
    assert.match(fs.readFileSync(file, 'utf8'), /\[info\] logged just before an exit\n$/);
  });
});

describe('loading winston', () => {
  it('loads the production build of its debugging aid, and leaves NODE_ENV as it was', () => {
    const script = `
      const { createLogger } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'log.js'))});
      const log = createLogger({ level: 2, color: false, env: {} });
      log.info('loaded');
      const loaded = Object.keys(require.cache).filter((f) => f.includes('@dabh/diagnostics/node/')).map((f) => path.basename(f));
      log.close().then(() => process.stderr.write(JSON.stringify({ nodeEnv: process.env.NODE_ENV ?? null, loaded })));`;
    for (const nodeEnv of [undefined, 'development']) {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.NODE_ENV;
      if (nodeEnv !== undefined) env.NODE_ENV = nodeEnv;
      const child = spawnSync(process.execPath, ['-e', `const path = require('node:path'); ${script}`], { encoding: 'utf8', env });
      assert.equal(child.status, 0, child.stderr);
      assert.match(child.stdout, /\[info\] loaded\n$/);
      const seen = JSON.parse(child.stderr) as { nodeEnv: string | null; loaded: string[] };
      assert.equal(seen.nodeEnv, nodeEnv ?? null);
      assert.deepEqual(seen.loaded.sort(), ['index.js', 'production.js']);
    }
  });
});
