// The Debian package as scripts/build-deb.sh (npm run deb) builds it, checked with
// Debian's own tools: its control fields, files and conffiles (dpkg-deb), the maintainer
// scripts debhelper generated, lintian, and the unpacked tree running on its own with the
// patched binding. Built once for the file (plus once with DYNMHS_DEB_VERSION), into a
// temporary directory; the checkout must be left as it was.
// Needs dpkg-dev, debhelper and lintian (the test says how to install them when missing).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';

const REPO = join(__dirname, '..', '..', '..');
const BUILD = join(REPO, 'scripts', 'build-deb.sh');
const VERSION = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;

const skip = existsSync(join(REPO, 'dist', 'src', 'main.js')) ? false : 'dist/src/main.js is not built (npm run build)';

function run(command: string, args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The checkout's own files, as a build could change them: top-level names and everything under debian/ and scripts/. */
function snapshot(): string[] {
  const out = readdirSync(REPO).filter((n) => n !== 'node_modules' && n !== 'dist').sort();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(REPO, rel)).sort()) {
      const path = `${rel}/${name}`;
      const st = statSync(join(REPO, path));
      out.push(`${path} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(path);
    }
  };
  walk('debian');
  walk('scripts');
  out.push(...readdirSync(join(REPO, '..')).filter((n) => /^dynmhs_.*\.(deb|changes|buildinfo)$/.test(n)).map((n) => `../${n}`));
  return out;
}

/** Fails (not skips) with the command that installs what is missing: the suite runs as root on Debian. */
function requireTools(): void {
  const missing = ['dpkg-buildpackage', 'dh', 'lintian', 'dpkg-deb'].filter((t) => run('sh', ['-c', `command -v ${t}`]).code !== 0);
  assert.deepEqual(missing, [], `missing ${missing.join(', ')}: apt-get install --no-install-recommends dpkg-dev debhelper lintian`);
}

describe('the Debian package (scripts/build-deb.sh)', { skip }, () => {
  const out = mkdtempSync('/tmp/dynmhs-deb-test-');
  let deb = '';
  let buildOutput = '';
  let before_: string[] = [];
  after(() => rmSync(out, { recursive: true, force: true }));

  before(() => {
    requireTools();
    before_ = snapshot();
    const r = run('bash', [BUILD], { DYNMHS_DEB_OUTDIR: join(out, 'default') });
    buildOutput = `${r.stdout}${r.stderr}`;
    assert.equal(r.code, 0, buildOutput);
    deb = r.stdout.trim().split('\n').at(-1) ?? '';
  });

  const field = (name: string): string => {
    const r = run('dpkg-deb', ['-f', deb, name]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const controlFile = (name: string): string => {
    const dir = join(out, 'control');
    if (!existsSync(dir)) assert.equal(run('dpkg-deb', ['-e', deb, dir]).code, 0);
    return readFileSync(join(dir, name), 'utf8');
  };
  const unpacked = (): string => {
    const dir = join(out, 'root');
    if (!existsSync(dir)) assert.equal(run('dpkg-deb', ['-x', deb, dir]).code, 0);
    return dir;
  };

  test('is dynmhs_<version>_<arch>.deb, its absolute path the last line of stdout, and the checkout is left as it was', () => {
    const arch = run('dpkg', ['--print-architecture']).stdout.trim();
    assert.equal(deb, join(out, 'default', `dynmhs_${VERSION}_${arch}.deb`));
    assert.ok(existsSync(deb), deb);
    assert.deepEqual(readdirSync(join(out, 'default')), [basename(deb)], 'only the package is left in the output directory');
    assert.deepEqual(snapshot(), before_, 'the build changed the checkout');
    assert.equal(field('Package'), 'dynmhs');
    assert.equal(field('Version'), VERSION);
    assert.equal(field('Architecture'), arch);
  });

  test('depends on nodejs >= 20, iproute2, a system bus and the libraries of the binding; recommends polkitd', () => {
    const depends = field('Depends').split(/,\s*/);
    for (const d of ['nodejs (>= 20)', 'iproute2', 'default-dbus-system-bus | dbus-system-bus']) assert.ok(depends.includes(d), `Depends lacks ${d}: ${depends}`);
    assert.ok(depends.some((d) => /^libc6 \(>= /.test(d)), `no shlibs dependency: ${depends}`);
    assert.equal(field('Recommends'), 'polkitd');
  });

  test('ships every file in its place, the prebuilt patched binding, no development files', () => {
    const r = run('dpkg-deb', ['-c', deb]);
    assert.equal(r.code, 0, r.stderr);
    const entries = new Map<string, string>();  // path -> "mode owner"
    for (const line of r.stdout.trim().split('\n')) {
      const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.(\/\S*)/.exec(line);
      assert.ok(m, line);
      entries.set(m[3].replace(/\/$/, ''), `${m[1]} ${m[2]}`);
    }
    const unitDir = [...entries.keys()].find((p) => p.endsWith('/systemd/system/dynmhs.service'));
    assert.ok(unitDir === '/lib/systemd/system/dynmhs.service' || unitDir === '/usr/lib/systemd/system/dynmhs.service', `unit at ${unitDir}`);
    for (const [path, mode] of [
      ['/usr/sbin/dynmhs', '-rwxr-xr-x'],
      ['/usr/bin/dynmhsctl', '-rwxr-xr-x'],
      ['/usr/lib/dynmhs/dist/src/main.js', '-rwxr-xr-x'],
      ['/usr/lib/dynmhs/dist/src/cli/dynmhsctl.js', '-rwxr-xr-x'],
      ['/usr/lib/dynmhs/package.json', '-rw-r--r--'],
      ['/usr/lib/dynmhs/dynmhs.conf.default', '-rw-r--r--'],
      ['/usr/lib/dynmhs/node_modules/netlink/build/Release/netlink_binding.node', '-rw-r--r--'],
      ['/usr/lib/dynmhs/node_modules/dbus-next/package.json', '-rw-r--r--'],
      ['/usr/lib/dynmhs/node_modules/winston/package.json', '-rw-r--r--'],
      ['/usr/lib/dynmhs/node_modules/ini/package.json', '-rw-r--r--'],
      [unitDir, '-rw-r--r--'],
      ['/usr/share/dbus-1/system.d/no.nntb.DynMHS.conf', '-rw-r--r--'],
      ['/usr/share/dbus-1/system-services/no.nntb.DynMHS.service', '-rw-r--r--'],
      ['/usr/share/polkit-1/actions/no.nntb.DynMHS.policy', '-rw-r--r--'],
      ['/usr/lib/systemd/networkd.conf.d/dynmhs.conf', '-rw-r--r--'],
      ['/etc/iproute2/rt_protos.d/dynmhs.conf', '-rw-r--r--'],
      ['/etc/dynmhs/dynmhs.conf', '-rw-r--r--'],
      ['/usr/share/man/man8/dynmhs.8.gz', '-rw-r--r--'],
      ['/usr/share/man/man1/dynmhsctl.1.gz', '-rw-r--r--'],
      ['/usr/share/man/man5/dynmhs.conf.5.gz', '-rw-r--r--'],
      ['/usr/share/bash-completion/completions/dynmhsctl', '-rw-r--r--'],
      ['/usr/share/bash-completion/completions/dynmhs', '-rw-r--r--'],
      ['/usr/share/doc/dynmhs/copyright', '-rw-r--r--'],
    ] as const) {
      assert.equal(entries.get(path!), `${mode} root/root`, `${path}: ${entries.get(path!) ?? 'missing'}`);
    }
    const paths = [...entries.keys()];
    const unwanted = paths.filter((p) => p.includes('/node_modules/typescript/') || p.includes('/dist/test/') || p.includes('/netlink/prebuilds/')
      || p.includes('/netlink/build/Release/obj.target') || p.endsWith('/install-manifest') || /\/node_modules\/.+\/\.[^/]+$/.test(p)
      || p.includes('.dynmhs-'));
    assert.deepEqual(unwanted, [], 'development or temporary files in the package');
    assert.ok(!paths.some((p) => p.startsWith('/usr/local')), 'nothing under /usr/local');
  });

  test('the files in /etc are conffiles', () => {
    assert.deepEqual(controlFile('conffiles').trim().split('\n').sort(), ['/etc/dynmhs/dynmhs.conf', '/etc/iproute2/rt_protos.d/dynmhs.conf']);
  });

  test('maintainer scripts: enable and start on install, restart on upgrade, stop only on removal, purge the state', () => {
    const postinst = controlFile('postinst');
    assert.match(postinst, /deb-systemd-helper enable 'dynmhs\.service'/);
    assert.match(postinst, /_dh_action=restart[\s\S]*_dh_action=start[\s\S]*deb-systemd-invoke \$_dh_action 'dynmhs\.service'/);
    // the bus must know the policy before the start (dbus's trigger runs only after postinst)
    assert.ok(postinst.indexOf('ReloadConfig') >= 0 && postinst.indexOf('ReloadConfig') < postinst.indexOf('deb-systemd-invoke'), 'ReloadConfig before the start');
    const prerm = controlFile('prerm');
    assert.match(prerm, /\[ "\$1" = remove \][^\n]*\n\s*deb-systemd-invoke stop 'dynmhs\.service'/, 'stopped on removal only, not before an upgrade');
    assert.equal((prerm.match(/deb-systemd-invoke/g) ?? []).length, 1);
    const postrm = controlFile('postrm');
    assert.match(postrm, /"\$1" = "purge"[\s\S]*rm -rf \/var\/lib\/dynmhs \/var\/log\/dynmhs/);
    assert.match(postrm, /deb-systemd-helper purge 'dynmhs\.service'/);
    for (const script of ['postinst', 'prerm', 'postrm']) {
      assert.equal(run('sh', ['-n', join(out, 'control', script)]).code, 0, `${script} is not valid sh`);
    }
  });

  test('lintian reports no errors', () => {
    const r = run('lintian', ['--tag-display-limit', '0', deb]);
    const tags = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
    assert.equal(r.code, 0, `lintian exit ${r.code}:\n${r.stdout}${r.stderr}`);
    assert.deepEqual(tags.filter((l) => l.startsWith('E: ')), [], r.stdout);
  });

  test('the unpacked package runs on its own: wrappers, unit, modules and the patched binding', () => {
    const root = unpacked();
    assert.match(readFileSync(join(root, 'usr/sbin/dynmhs'), 'utf8'), /^exec \/usr\/bin\/node --min-semi-space-size=32 \S+ \S+ --expose-gc \/usr\/lib\/dynmhs\/dist\/src\/main\.js "\$@"$/m);
    assert.match(readFileSync(join(root, 'usr/bin/dynmhsctl'), 'utf8'), /^exec \/usr\/bin\/node \/usr\/lib\/dynmhs\/dist\/src\/cli\/dynmhsctl\.js "\$@"$/m);
    const unit = ['lib', 'usr/lib'].map((d) => join(root, d, 'systemd/system/dynmhs.service')).find((p) => existsSync(p))!;
    assert.match(readFileSync(unit, 'utf8'), /^ExecStart=\/usr\/sbin\/dynmhs --service --config \/etc\/dynmhs\/dynmhs\.conf$/m);
    const lib = join(root, 'usr/lib/dynmhs');
    for (const entry of ['dist/src/main.js', 'dist/src/cli/dynmhsctl.js']) {
      const v = spawnSync(process.execPath, [join(lib, entry), '--version'], { encoding: 'utf8', cwd: '/' });
      assert.equal(v.status, 0, `${entry} --version: ${v.stdout}${v.stderr}`);
      assert.match(v.stdout, new RegExp(VERSION.replace(/\./g, '\\.')));
    }
    // a netlink socket from the packaged modules has the methods the patch adds
    const probe = spawnSync(process.execPath, ['-e', `
      const { RawNetlinkSocket } = require(${JSON.stringify(join(lib, 'node_modules/netlink/dist/raw'))});
      const { patchedNative } = require(${JSON.stringify(join(lib, 'dist/src/kernel/native'))});
      const socket = new RawNetlinkSocket(0);
      patchedNative(socket);
      socket.close();
      console.log('patched');`], { encoding: 'utf8', cwd: '/' });
    assert.equal(probe.status, 0, probe.stderr);
    assert.equal(probe.stdout.trim(), 'patched');
  });

  test('DYNMHS_DEB_VERSION builds a package of that version (an upgrade for the container tests)', () => {
    const version = `${VERSION}+test1`;
    const r = run('bash', [BUILD], { DYNMHS_DEB_OUTDIR: join(out, 'override'), DYNMHS_DEB_VERSION: version });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    const path = r.stdout.trim().split('\n').at(-1)!;
    assert.equal(basename(path), `dynmhs_${version}_${field('Architecture')}.deb`);
    const v = run('dpkg-deb', ['-f', path, 'Version']);
    assert.equal(v.stdout.trim(), version);
    assert.equal(run('dpkg', ['--compare-versions', version, 'gt', VERSION]).code, 0);
    const bad = run('bash', [BUILD], { DYNMHS_DEB_OUTDIR: join(out, 'bad'), DYNMHS_DEB_VERSION: 'not a version' });
    assert.equal(bad.code, 2, bad.stderr);
    assert.deepEqual(snapshot(), before_, 'the builds changed the checkout');
  });
});
