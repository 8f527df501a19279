// The mounts of /proc/self/mountinfo (common/cgroup-memory.ts) and the benchmark's note of the
// filesystem its chDB store is on (bench/report.ts filesystemOf).
import { describe, expect, it } from 'vitest';
import { filesystemOf } from '../../bench/report.js';
import { parseMountInfo } from '../../common/cgroup-memory.js';

const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
  '25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683784k',
  '30 25 0:27 / /dev/shm rw,relatime - tmpfs shm rw,size=65536k',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '50 27 259:1 / /var/lib/ktrail\\040data rw,noatime - xfs /dev/nvme0n1p1 rw,attr2',
  '51 27 259:2 / /srv rw,noatime - ext4 /dev/nvme1n1 rw',
  'a line of another form',
].join('\n');

describe('mountinfo', () => {
  it('lists every mount with its type and source, escapes undone', () => {
    const mounts = parseMountInfo(MOUNTINFO);
    expect(mounts.map((m) => [m.mountPoint, m.fsType, m.source])).toEqual([
      ['/', 'ext4', '/dev/vda'],
      ['/dev/shm', 'tmpfs', 'tmpfs'],
      ['/dev/shm', 'tmpfs', 'shm'],
      ['/sys/fs/cgroup/unified', 'cgroup2', 'cgroup2'],
      ['/var/lib/ktrail data', 'xfs', '/dev/nvme0n1p1'],
      ['/srv', 'ext4', '/dev/nvme1n1'],
    ]);
    expect(mounts[3]?.superOptions).toEqual(['rw']);
  });
});

describe("the benchmark's store filesystem", () => {
  it('is the deepest mount holding the path, the last one mounted on a shared mount point', () => {
    expect(filesystemOf('/var/lib/ktrail data/chdb', MOUNTINFO, [])).toBe('xfs (/dev/nvme0n1p1)');
    expect(filesystemOf('/dev/shm/bench', MOUNTINFO, [])).toBe('tmpfs (shm)');
    // A sibling whose name only starts like a mount point is not under it.
    expect(filesystemOf('/srvx/store', MOUNTINFO, ['vda-8'])).toBe('ext4 (/dev/vda) with a journal');
  });

  it('says whether an ext4 store has a journal (jbd2 names it <device>-<inode>)', () => {
    expect(filesystemOf('/tmp/bench', MOUNTINFO, [])).toBe('ext4 (/dev/vda) without a journal');
    expect(filesystemOf('/tmp/bench', MOUNTINFO, ['nvme1n1-8'])).toBe('ext4 (/dev/vda) without a journal');
    expect(filesystemOf('/srv/store', MOUNTINFO, ['nvme1n1-8'])).toBe('ext4 (/dev/nvme1n1) with a journal');
  });

  it('names no filesystem when no mount holds the path', () => {
    expect(filesystemOf('/tmp/bench', '', [])).toBe('an unknown filesystem');
  });

  it("reads this machine's mounts by default", () => {
    expect(filesystemOf('/')).toMatch(/^\S+ \(.+\)/);
  });
});
