// `sudo npm run demo` as the README promises it: the seed scenario end to end, with
// nothing on PATH but iproute2's `ip` (no nftables, ping or sysctl), and nothing of it
// left afterwards. Needs root (network namespaces); skipped otherwise.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { netnsSkipReason } from '../helpers/netns';

const skip = netnsSkipReason();
const DEMO = resolve(__dirname, '..', '..', 'demo', 'demo.js');

function which(command: string): string {
  const r = spawnSync('/bin/sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} not found`);
  return r.stdout.trim();
}

describe('the demo', { skip }, () => {
  const bin = mkdtempSync(join(tmpdir(), `dynmhs-demo-path-${process.pid}-`));
  after(() => rmSync(bin, { recursive: true, force: true }));

  it('shows every source address leaving through wan1 without dynmhs and through its own uplink with it, needing only ip', async () => {
    symlinkSync(which('ip'), join(bin, 'ip'));
    const child = spawn(process.execPath, [DEMO], {
      env: { ...process.env, PATH: bin }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { output += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { output += s; });
    const timer = setTimeout(() => child.kill('SIGINT'), 60_000);
    const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    clearTimeout(timer);

    assert.equal(code, 0, output);
    assert.match(output, /2 of 4 source addresses do NOT use their own interface/, output);
    for (const [source, own] of [['10.102.0.2', 'wan2'], ['fd00:102::2', 'wan2']]) {
      assert.match(output, new RegExp(`from ${source} +→ wan1 [5-9], wan2 [0-4] +5/5 answered +not via its own ${own}`), output);
    }
    assert.match(output, /4 of 4 source addresses leave through their own interface/, output);
    for (const [source, own] of [['10.101.0.2', 'wan1'], ['fd00:101::2', 'wan1'], ['10.102.0.2', 'wan2'], ['fd00:102::2', 'wan2']]) {
      assert.match(output, new RegExp(`from ${source} +→ .* +5/5 answered +leaves via its own ${own}`), output);
    }
    assert.match(output, /clean: no dynmhs rules or routes left/, output);
    assert.match(output, /Demo succeeded/, output);

    const prefix = `dmh${child.pid! % 10000}d-`;
    const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    assert.ok(!namespaces.split('\n').some((line) => line.startsWith(prefix)), `left over: ${namespaces}`);
  });
});
