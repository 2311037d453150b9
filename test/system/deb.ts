// The Debian package in the container tests: built as a user builds it (`npm run deb`),
// installed from the checkout the container sees at SRC, and its dependency on nodejs met.
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, SRC, attempt, must, type Container } from './harness';

/** Build tools `npm run deb` needs on the host, with their packages. */
export const DEB_BUILD_TOOLS: ReadonlyArray<readonly [string, string]> = [
  ['/usr/bin/dpkg-buildpackage', 'dpkg-dev'], ['/usr/bin/dh', 'debhelper'],
];

/** `npm run deb` (with DYNMHS_DEB_VERSION when given): the path of the package, its output's last line. */
export async function buildDeb(version?: string): Promise<string> {
  const env = { ...process.env, ...(version ? { DYNMHS_DEB_VERSION: version } : {}) };
  const r = await attempt('npm', ['run', '--silent', 'deb'], { env, timeoutMs: 300_000 });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.code !== 0 || !last.endsWith('.deb') || !existsSync(last)) {
    throw new Error(`npm run deb${version ? ` (DYNMHS_DEB_VERSION=${version})` : ''} failed (exit ${r.code}):\n${r.stderr.slice(-3000)}${r.stdout.slice(-1000)}`);
  }
  return last;
}

/** The package's path as the container sees it (the checkout is mounted at SRC). */
export function inContainer(hostPath: string): string {
  if (!hostPath.startsWith(`${REPO}/`)) throw new Error(`${hostPath} is not under ${REPO}`);
  return `${SRC}/${hostPath.slice(REPO.length + 1)}`;
}

/**
 * The package Depends on nodejs (>= 20). Where this machine's Node is not a dpkg package
 * (e.g. installed from nodejs.org into /usr/local), the container's dpkg database gets a
 * placeholder `nodejs` of the running Node's version, built here with dpkg-deb, shipping
 * only /usr/bin/node as a link to that Node: dpkg then sees the dependency met by the very
 * Node the tests run on. Where the machine's nodejs package is recent enough (as on a
 * Debian with NodeSource's), nothing is done.
 */
export async function ensureNodejsPackage(c: Container): Promise<string> {
  const installed = await c.attempt(['dpkg-query', '-W', '-f', '${Status} ${Version}', 'nodejs']);
  const m = /^install ok installed (\d+)/.exec(installed.stdout);
  if (m && Number(m[1]) >= 20) return `nodejs ${installed.stdout.split(' ').at(-1)} (a dpkg package on this machine)`;
  const root = join(c.dir, 'nodejs-placeholder');
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  const node = process.execPath;
  if (node !== '/usr/bin/node') symlinkSync(node, join(root, 'usr', 'bin', 'node'));
  const arch = (await must('dpkg', ['--print-architecture'])).stdout.trim();
  writeFileSync(join(root, 'DEBIAN', 'control'), [
    'Package: nodejs', `Version: ${process.versions.node}-0dynmhstest`, `Architecture: ${arch}`,
    'Maintainer: dynmhs tests <root@localhost>', 'Section: javascript', 'Priority: optional',
    `Description: placeholder for the Node.js at ${node}`,
    ' Lets dpkg in the test container see the Node.js the tests run on.', '',
  ].join('\n'));
  const deb = join(c.dir, 'nodejs-placeholder.deb');
  await must('dpkg-deb', ['--root-owner-group', '--build', root, deb]);
  // into the container's own /tmp, through its root as the host sees it
  await must('cp', [deb, `/proc/${c.pid1}/root/tmp/nodejs-placeholder.deb`]);
  await c.exec(['dpkg', '-i', '/tmp/nodejs-placeholder.deb']);
  return `placeholder nodejs ${process.versions.node}-0dynmhstest -> ${node}`;
}
