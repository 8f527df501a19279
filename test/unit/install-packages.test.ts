// What `./ktrail up` and `./ktrail test` install from Debian (issue #19, item 5): one list per
// path (deploy/local/packages/), read by deploy/local/install.sh through deploy/local/apt.sh.
// `up` gets what it builds and runs; what only the tests need stays out of its list; and apt
// is told not to upgrade what is already installed.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../common/repo-root.js';

const local = `${REPO_ROOT}/deploy/local`;
/** A line of a script that runs apt-get itself instead of apt.sh's apt_install. */
const APT_COMMAND = /^\s*(\{ )?(DEBIAN_FRONTEND=\S+ )?apt-get (update|install)/m;

/** The packages of a list, as apt.sh's apt_list reads them. */
function list(name: 'up' | 'test'): string[] {
  const out = execFileSync('bash', ['-c', `. "${local}/apt.sh"; apt_list "${local}/packages/${name}.txt"`], {
    encoding: 'utf8',
  });
  return out.split('\n').filter((l) => l !== '');
}

describe('Debian packages per path', () => {
  const up = list('up');
  const test = list('test');

  it('up installs none of what only the tests use', () => {
    for (const testOnly of ['clickhouse-server', 'debootstrap', 'curl', 'openjdk-17-jdk-headless'])
      expect(test, `${testOnly} belongs to the test list`).toContain(testOnly);
    expect(up.filter((p) => test.includes(p))).toEqual([]);
    // The broker runs on a JRE; javac is the Avro interop test's.
    expect(up).toContain('openjdk-17-jre-headless');
  });

  it('up has what it builds and runs with', () => {
    for (const needed of [
      'clang',
      'bpftool',
      'libbpf-dev',
      'g++',
      'python3',
      'maven',
      'docker.io',
      'busybox-static',
    ])
      expect(up).toContain(needed);
  });

  it('every package is named once, with the reason beside it', () => {
    const all = [...up, ...test];
    expect(new Set(all).size).toBe(all.length);
    for (const name of ['up', 'test'] as const) {
      const lines = readFileSync(`${local}/packages/${name}.txt`, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith('#'));
      for (const line of lines)
        expect(line, `${name}.txt: a package without its reason`).toMatch(/^\S+\s+# \S/);
    }
  });

  it('install.sh takes its packages from the lists, the path deciding which', () => {
    const install = readFileSync(`${local}/install.sh`, 'utf8');
    expect(install).not.toMatch(APT_COMMAND);
    expect(install).toMatch(/up\) lists=\(deploy\/local\/packages\/up\.txt\)/);
    expect(readFileSync(`${REPO_ROOT}/ktrail`, 'utf8')).toMatch(/bash deploy\/local\/install\.sh up\n/);
  });

  it('apt installs exactly what is missing: no recommends, no upgrade of installed packages', () => {
    const flags = execFileSync(
      'bash',
      ['-c', `. "${local}/apt.sh"; printf '%s\\n' "\${APT_INSTALL_FLAGS[@]}"`],
      {
        encoding: 'utf8',
      },
    ).split('\n');
    expect(flags).toEqual(expect.arrayContaining(['--no-install-recommends', '--no-upgrade']));
    // apt 2.5+ otherwise upgrades every installed package of a new package's source package.
    expect(flags).toContain('APT::Get::Upgrade-By-Source-Package=false');
    for (const script of [
      'install.sh',
      'node.sh',
      'docker.sh',
      'containerd.sh',
      'clickhouse-server.sh',
      'go.sh',
    ])
      expect(readFileSync(`${local}/${script}`, 'utf8'), script).not.toMatch(APT_COMMAND);
  });
});
