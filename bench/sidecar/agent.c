// The per-container agent of the sidecar comparison (bench/sidecar/run.ts), written minimally
// in the common style: it runs in the container's PID and network namespaces and once a
// second reads what such agents read: every process's cmdline, the TCP socket tables, and
// the cgroup's CPU and memory files. It prints what it saw ("P <pid>" for a process whose
// arguments carry the marker, "T <port>" for a socket to or from the workload's port), so
// the benchmark can compare it with the workload's own counts.
//   agent MARKER PORT
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = 0;
  return n;
}

static void scan_procs(const char *marker) {
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *e;
  char path[300], buf[4096], self[32];
  snprintf(self, sizeof self, "%d", (int)getpid());
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || strcmp(e->d_name, self) == 0) continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    size_t n = slurp(path, buf, sizeof buf);
    for (size_t i = 0; i < n; i++)
      if (buf[i] == 0) buf[i] = ' ';
    if (n > 0 && strstr(buf, marker)) printf("P %s\n", e->d_name);
    // What agents also collect per process (CPU, memory): read, not used here.
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    slurp(path, buf, sizeof buf);
  }
  closedir(d);
}

static void scan_tcp(const char *table, unsigned port) {
  FILE *f = fopen(table, "r");
  if (!f) return;
  char line[512];
  if (!fgets(line, sizeof line, f)) {
    fclose(f);
    return;
  }
  while (fgets(line, sizeof line, f)) {
    unsigned lport = 0, rport = 0;
    char laddr[64], raddr[64];
    if (sscanf(line, "%*d: %63[0-9A-Fa-f]:%x %63[0-9A-Fa-f]:%x", laddr, &lport, raddr, &rport) != 4) continue;
    // A connection to the workload's port: the client's ephemeral port names it.
    if (rport == port) printf("T %u\n", lport);
    else if (lport == port && rport != 0) printf("T %u\n", rport);
  }
  fclose(f);
}

static void read_cgroup(void) {
  static const char *files[] = {
      "/sys/fs/cgroup/cpu.stat", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
      "/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
      "/sys/fs/cgroup/memory/memory.stat",
  };
  char buf[8192];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) slurp(files[i], buf, sizeof buf);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  unsigned port = (unsigned)atoi(argv[2]);
  for (;;) {
    scan_procs(argv[1]);
    scan_tcp("/proc/net/tcp", port);
    scan_tcp("/proc/net/tcp6", port);
    read_cgroup();
    fflush(stdout);
    sleep(1);
  }
}
