// Load generator for tests and the kernel benchmark: calls getpid() (a tracepoint the fixture
// object listens on) COUNT times, optionally paced to RATE calls per second.
//   getpid_storm COUNT [RATE] [--wait]
// --wait prints the pid and waits for a line on stdin first, so a test can configure a
// capture for exactly this process (or move it into a cgroup) before the calls start.
// Prints one JSON line: {"pid":..,"calls":..,"seconds":..}.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s COUNT [RATE] [--wait]\n", argv[0]);
    return 2;
  }
  long count = atol(argv[1]);
  pid_t pid = getpid();  // once: later prints must not add calls of their own
  double rate = argc > 2 && argv[2][0] != '-' ? atof(argv[2]) : 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--wait") == 0) {
      printf("%d\n", pid);
      fflush(stdout);
      char line[64];
      if (!fgets(line, sizeof(line), stdin)) return 1;
    }
  }
  double start = now();
  // Paced in chunks of 1000 calls: fine-grained enough at bench rates, cheap to check.
  for (long i = 0; i < count; i++) {
    syscall(SYS_getpid);  // the raw syscall: glibc may not enter the kernel for getpid()
    if (rate > 0 && (i % 1000) == 999) {
      double due = start + (i + 1) / rate;
      double t;
      while ((t = now()) < due) {
        if (due - t > 0.0002) usleep((useconds_t)((due - t) * 1e6 / 2));
      }
    }
  }
  double seconds = now() - start;
  printf("{\"pid\":%d,\"calls\":%ld,\"seconds\":%.6f}\n", pid, count, seconds);
  return 0;
}
