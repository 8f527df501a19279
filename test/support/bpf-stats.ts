// Turns the kernel's BPF run-time accounting on for as long as a test needs it, through
// BPF_ENABLE_STATS: the kernel counts while the returned fd is open and drops its reference
// when the holder exits. Unlike writing kernel.bpf_stats_enabled, this leaves the sysctl
// (shared with anyone else on the machine) as it was.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

// bpf(BPF_ENABLE_STATS = 32, {type = BPF_STATS_RUN_TIME = 0}); holds the fd until stdin closes.
const HOLDER = `
import ctypes, os, platform, sys
nr = {'x86_64': 321, 'aarch64': 280}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
attr = (ctypes.c_uint8 * 128)()
fd = libc.syscall(nr, 32, ctypes.byref(attr), ctypes.sizeof(attr))
if fd < 0:
    sys.stderr.write('BPF_ENABLE_STATS failed: ' + os.strerror(ctypes.get_errno()) + '\\n')
    sys.exit(1)
sys.stdout.write('on\\n'); sys.stdout.flush()
sys.stdin.read()
`;

export interface BpfStatsHold {
  release(): Promise<void>;
}

/** Resolves once the kernel counts run_time_ns / run_cnt; rejects with the kernel's reason. */
export async function enableBpfStats(): Promise<BpfStatsHold> {
  const child: ChildProcess = spawn('python3', ['-c', HOLDER], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`bpf stats holder exited ${code}: ${stderr.trim()}`)));
    child.once('error', reject);
  });
  await ready;
  return {
    async release() {
      if (child.exitCode !== null) return;
      child.stdin?.end();
      await once(child, 'exit');
    },
  };
}
