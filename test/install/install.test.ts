// scripts/install-system.sh and uninstall-system.sh into throwaway DESTDIRs: the file
// list, the manifest, the installed tree running on its own, an admin's config never
// overwritten, and uninstall removing exactly what install put there.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, lstatSync, statSync, symlinkSync, watch } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { daemonNodeOptions } from '../helpers/daemon';

const REPO = join(__dirname, '..', '..', '..');
const INSTALL = join(REPO, 'scripts', 'install-system.sh');
const UNINSTALL = join(REPO, 'scripts', 'uninstall-system.sh');

const skip = existsSync(join(REPO, 'dist', 'src', 'main.js')) && existsSync(join(REPO, 'dist', 'src', 'cli', 'dynmhsctl.js'))
  ? false : 'dist/src/main.js is not built (npm run build)';

function sh(script: string, env: Record<string, string>, timeout = 120_000): { code: number | null; out: string } {
  const r = spawnSync('bash', [script], { encoding: 'utf8', env: { ...process.env, ...env }, timeout });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Every file, symlink and directory under root, as absolute paths inside it. */
function tree(root: string, base = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, base)).sort()) {
    const rel = `${base}/${name}`;
    const st = lstatSync(join(root, rel));
    if (st.isDirectory()) out.push(`${rel}/`, ...tree(root, rel));
    else out.push(rel);
  }
  return out;
}

const outsideModules = (paths: string[]): string[] =>
  paths.filter((p) => !p.includes('/lib/dynmhs/node_modules/') && !p.includes('/lib/dynmhs/dist/') && !p.endsWith('/'));

describe('install-system.sh / uninstall-system.sh into a DESTDIR', { skip }, () => {
  const dirs: string[] = [];
  const destdir = (): string => {
    const d = mkdtempSync('/tmp/dynmhs-install-test-');
    dirs.push(d);
    return d;
  };
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  test('PREFIX=/usr/local: the files, the manifest, a self-contained tree; uninstall leaves nothing', () => {
    const d = destdir();
    const r = sh(INSTALL, { DESTDIR: d, PREFIX: '/usr/local' });
    assert.equal(r.code, 0, r.out);
    const files = tree(d);
    assert.deepEqual(outsideModules(files), [
      '/etc/dbus-1/system.d/no.nntb.DynMHS.conf',
      '/etc/dynmhs/dynmhs.conf',
      '/etc/iproute2/rt_protos.d/dynmhs.conf',
      '/usr/local/bin/dynmhsctl',
      '/usr/local/lib/dynmhs/dynmhs.conf.default',
      '/usr/local/lib/dynmhs/install-manifest',
      '/usr/local/lib/dynmhs/package.json',
      '/usr/local/lib/systemd/networkd.conf.d/dynmhs.conf',
      '/usr/local/lib/systemd/system/dynmhs.service',
      '/usr/local/sbin/dynmhs',
      '/usr/local/share/bash-completion/completions/dynmhs',
      '/usr/local/share/bash-completion/completions/dynmhsctl',
      '/usr/local/share/dbus-1/system-services/no.nntb.DynMHS.service',
      '/usr/local/share/man/man1/dynmhsctl.1',
      '/usr/local/share/man/man5/dynmhs.conf.5',
      '/usr/local/share/man/man8/dynmhs.8',
      '/usr/share/polkit-1/actions/no.nntb.DynMHS.policy',
    ].filter((p) => !p.includes('networkd.conf.d') || existsSync(join(REPO, 'systemd', 'networkd.conf.d', 'dynmhs.conf')))
      .filter((p) => !p.includes('rt_protos.d') || existsSync(join(REPO, 'iproute2', 'rt_protos.d', 'dynmhs.conf'))));
    // the manifest names every file and directory that is there, and nothing else
    const manifest = readFileSync(join(d, 'usr/local/lib/dynmhs/install-manifest'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    const listed = manifest.map((l) => (l.startsWith('d ') ? `${l.slice(2)}/` : l.slice(2).replace(/ \S+$/, ''))).sort();
    assert.deepEqual(listed, files.filter((f) => f !== '/usr/local/lib/dynmhs/install-manifest').sort());
    // no development modules, no tests
    assert.ok(!files.some((f) => f.includes('/node_modules/typescript/')), 'typescript is a devDependency');
    assert.ok(files.includes('/usr/local/lib/dynmhs/node_modules/dbus-next/'));
    assert.ok(!files.some((f) => f.includes('/dist/test/')), 'tests are not installed');
    // wrappers and the unit point at the installed paths
    assert.match(readFileSync(join(d, 'usr/local/sbin/dynmhs'), 'utf8'), /^unset NODE_EXTRA_CA_CERTS$/m, 'the daemon starts without parsing CA certificates');
    assert.match(readFileSync(join(d, 'usr/local/sbin/dynmhs'), 'utf8'), /^exec \S*node --min-semi-space-size=32 --max-semi-space-size=32 --max-inlined-bytecode-size-cumulative=200 --interrupt-budget=8192 --expose-gc \/usr\/local\/lib\/dynmhs\/dist\/src\/main\.js "\$@"$/m);
    assert.match(readFileSync(join(d, 'usr/local/bin/dynmhsctl'), 'utf8'), /^exec \S*node \/usr\/local\/lib\/dynmhs\/dist\/src\/cli\/dynmhsctl\.js "\$@"$/m);
    assert.match(readFileSync(join(d, 'usr/local/lib/systemd/system/dynmhs.service'), 'utf8'), /^ExecStart=\/usr\/local\/sbin\/dynmhs --service --config \/etc\/dynmhs\/dynmhs\.conf$/m);
    assert.equal(readFileSync(join(d, 'etc/dynmhs/dynmhs.conf'), 'utf8'), readFileSync(join(REPO, 'scripts', 'dynmhs.conf.default'), 'utf8'));
    // the installed tree runs on its own modules
    for (const entry of ['dist/src/cli/dynmhsctl.js', 'dist/src/main.js']) {
      const v = spawnSync('node', [join(d, 'usr/local/lib/dynmhs', entry), '--version'], { encoding: 'utf8', cwd: '/' });
      assert.equal(v.status, 0, `${entry} --version: ${v.stdout}${v.stderr}`);
      assert.match(v.stdout, /\d+\.\d+\.\d+/);
    }
    // a second install over the first is refused
    const again = sh(INSTALL, { DESTDIR: d, PREFIX: '/usr/local' });
    assert.notEqual(again.code, 0);
    assert.match(again.out, /already installed/);

    // what systemd made for the unit (StateDirectory, LogsDirectory) goes as well, as with apt purge
    mkdirSync(join(d, 'var/lib/dynmhs'), { recursive: true });
    writeFileSync(join(d, 'var/lib/dynmhs/tables.json'), '{}');
    mkdirSync(join(d, 'var/log/dynmhs'), { recursive: true });
    const u = sh(UNINSTALL, { DESTDIR: d, PREFIX: '/usr/local' });
    assert.equal(u.code, 0, u.out);
    assert.match(u.out, /Removed \/var\/lib\/dynmhs/);
    assert.deepEqual(tree(d).filter((p) => !/^\/var\/((lib|log)\/)?$/.test(p)), [], 'uninstall left files behind');
    const u2 = sh(UNINSTALL, { DESTDIR: d, PREFIX: '/usr/local' });
    assert.notEqual(u2.code, 0, 'nothing to uninstall is an error');
  });

  test('an existing dynmhs.conf is never overwritten nor removed; an edited installed one is kept', () => {
    const d = destdir();
    mkdirSync(join(d, 'etc/dynmhs'), { recursive: true });
    mkdirSync(join(d, 'usr/share'), { recursive: true });
    writeFileSync(join(d, 'etc/dynmhs/dynmhs.conf'), 'NETWORK=eth1:1000\n');
    let r = sh(INSTALL, { DESTDIR: d });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /kept the existing \/etc\/dynmhs\/dynmhs\.conf/);
    assert.equal(readFileSync(join(d, 'etc/dynmhs/dynmhs.conf'), 'utf8'), 'NETWORK=eth1:1000\n');
    r = sh(UNINSTALL, { DESTDIR: d });
    assert.equal(r.code, 0, r.out);
    assert.deepEqual(tree(d), ['/etc/', '/etc/dynmhs/', '/etc/dynmhs/dynmhs.conf', '/usr/', '/usr/share/'], 'only what was there before');

    const e = destdir();
    assert.equal(sh(INSTALL, { DESTDIR: e }).code, 0);
    writeFileSync(join(e, 'etc/dynmhs/dynmhs.conf'), 'SOURCE=networkmanager\n');
    r = sh(UNINSTALL, { DESTDIR: e });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Kept \/etc\/dynmhs\/dynmhs\.conf/);
    assert.deepEqual(tree(e), ['/etc/', '/etc/dynmhs/', '/etc/dynmhs/dynmhs.conf']);
  });

  test('PREFIX=/usr: distribution paths', () => {
    const d = destdir();
    const r = sh(INSTALL, { DESTDIR: d, PREFIX: '/usr' });
    assert.equal(r.code, 0, r.out);
    const files = tree(d);
    for (const f of ['/usr/share/dbus-1/system.d/no.nntb.DynMHS.conf', '/usr/lib/systemd/system/dynmhs.service', '/usr/sbin/dynmhs',
      '/usr/bin/dynmhsctl', '/usr/share/dbus-1/system-services/no.nntb.DynMHS.service', '/usr/share/man/man8/dynmhs.8']) {
      assert.ok(files.includes(f), `${f} missing`);
    }
    assert.match(readFileSync(join(d, 'usr/lib/systemd/system/dynmhs.service'), 'utf8'), /^ExecStart=\/usr\/sbin\/dynmhs /m);
    assert.equal(sh(UNINSTALL, { DESTDIR: d, PREFIX: '/usr' }).code, 0);
    assert.deepEqual(tree(d), []);
  });

  test('a DESTDIR that does not exist yet is created, and the install finishes', () => {
    const d = join(destdir(), 'new', 'stage');
    const r = sh(INSTALL, { DESTDIR: d, PREFIX: '/usr' }, 60_000);
    assert.equal(r.code, 0, `exit ${r.code} (null: killed after 60 s)\n${r.out}`);
    assert.ok(existsSync(join(d, 'usr/sbin/dynmhs')));
    assert.equal(sh(UNINSTALL, { DESTDIR: d, PREFIX: '/usr' }).code, 0);
    assert.deepEqual(tree(d), [], 'DESTDIR itself stays, empty');
  });

  test('every file appears by rename, whole and with its mode; no temporary file is left', async () => {
    const d = destdir();
    const policyDir = join(d, 'etc/dbus-1/system.d');
    mkdirSync(policyDir, { recursive: true });   // there first, as on a real system, so it can be watched
    const events: { event: string; name: string; mode?: number; size?: number }[] = [];
    const watcher = watch(policyDir, (event, name) => {
      if (name !== 'no.nntb.DynMHS.conf') return;
      try {
        const st = statSync(join(policyDir, name));
        events.push({ event, name, mode: st.mode & 0o777, size: st.size });
      } catch {
        events.push({ event, name });
      }
    });
    let child: ChildProcess | undefined;
    try {
      child = spawn('bash', [INSTALL], { env: { ...process.env, DESTDIR: d }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (b) => { stderr += b; });
      const code = await new Promise<number | null>((resolve) => child!.on('exit', resolve));
      assert.equal(code, 0, stderr);
      await new Promise((r) => setTimeout(r, 100));   // the last inotify events
    } finally {
      watcher.close();
      if (child?.exitCode === null) child.kill('SIGKILL');
    }
    const size = readFileSync(join(REPO, 'dbus', 'no.nntb.DynMHS.conf')).length;
    // install -m would show a create, a write and a chmod: here the only event is the rename
    assert.deepEqual(events, [{ event: 'rename', name: 'no.nntb.DynMHS.conf', mode: 0o644, size }]);
    assert.deepEqual(tree(d).filter((p) => p.includes('.dynmhs-')), [], 'temporary files left');
    assert.equal(sh(UNINSTALL, { DESTDIR: d }).code, 0);
  });

  test('bad PREFIX or DESTDIR are refused before anything is written', () => {
    const d = destdir();
    for (const env of [{ DESTDIR: d, PREFIX: "usr" }, { DESTDIR: "relative/dir", PREFIX: "/usr/local" }]) {
      const r = sh(INSTALL, env);
      assert.equal(r.code, 2, r.out);
    }
    assert.deepEqual(tree(d), []);
  });
});

describe('the daemon\'s Node options (first line of src/main.ts)', { skip }, () => {
  test('give V8 the 32 MB young generation, the inlining budget they were measured with and gc() for after start-up, and launchers read them', () => {
    const options = daemonNodeOptions();
    assert.deepEqual(options, ['--min-semi-space-size=32', '--max-semi-space-size=32', '--max-inlined-bytecode-size-cumulative=200', '--interrupt-budget=8192', '--expose-gc']);
    const probe = spawnSync(process.execPath, [...options, '-p',
      "require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size"], { encoding: 'utf8' });
    assert.equal(probe.status, 0, probe.stderr);
    // One semi-space is usable at a time: its size is what new_space reports.
    assert.equal(Number(probe.stdout.trim()), 32 * 1024 * 1024);
  });
});

describe('scripts/reload-bus-config.sh (run by install and uninstall into /)', () => {
  const dbusDaemon = spawnSync('sh', ['-c', 'command -v dbus-daemon'], { encoding: 'utf8' }).stdout.trim();
  const dirs: string[] = [];
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  /** A private bus of type system; its log collects what dbus-daemon says. */
  async function privateBus(): Promise<{ address: string; log: () => string; stop: () => void; dir: string }> {
    const dir = mkdtempSync('/tmp/dynmhs-bus-test-');
    dirs.push(dir);
    mkdirSync(join(dir, 'system.d'));
    writeFileSync(join(dir, 'bus.conf'), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=${dir}/socket</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/><allow user="*"/></policy>
<includedir>${dir}/system.d</includedir></busconfig>
`);
    const child = spawn(dbusDaemon, [`--config-file=${dir}/bus.conf`, '--nofork', '--nosyslog'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (b) => { log += b; });
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(dir, 'socket'))) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `dbus-daemon did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return { address: `unix:path=${dir}/socket`, log: () => log, stop: () => { if (child.exitCode === null) child.kill('SIGTERM'); }, dir };
  }

  async function reloads(env: Record<string, string>): Promise<void> {
    const bus = await privateBus();
    try {
      const r = spawnSync('bash', [join(REPO, 'scripts', 'reload-bus-config.sh')], {
        encoding: 'utf8', env: { ...process.env, ...env, DBUS_SYSTEM_BUS_ADDRESS: bus.address }, timeout: 30_000 });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.doesNotMatch(`${r.stdout}${r.stderr}`, /warning|note/);
      const deadline = Date.now() + 5_000;
      while (!/Reloaded configuration/.test(bus.log()) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      assert.match(bus.log(), /Reloaded configuration/);
    } finally {
      bus.stop();
    }
  }

  test('the system bus reloads its configuration (busctl)', { skip: dbusDaemon === '' ? 'dbus-daemon is not installed' : false }, async () => {
    await reloads({});
  });

  test('the system bus reloads its configuration (dbus-send, where busctl is missing)', { skip: dbusDaemon === '' ? 'dbus-daemon is not installed' : false }, async () => {
    const bin = mkdtempSync('/tmp/dynmhs-bus-path-');
    dirs.push(bin);
    for (const tool of ['bash', 'dbus-send']) {
      const path = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      assert.ok(path, `${tool} not found`);
      symlinkSync(path, join(bin, tool));
    }
    await reloads({ PATH: bin });
  });
});
