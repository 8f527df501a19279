// Exec storm for the kernel benchmark: fork + exec /bin/true with a few arguments (the
// exec program copies argv: an argument-less exec would understate it) + wait, as fast as
// possible, for SECONDS. Prints {"execs":N,"seconds":S}.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 1.0;
  double start = now(), t = start;
  long execs = 0;
  char *const args[] = {"/bin/true", "-c", "echo ktrail exec storm", "--config=/etc/ktrail/bench.yaml",
                        "--verbose", "42", NULL};
  while ((t = now()) - start < seconds) {
    pid_t pid = vfork();
    if (pid == 0) {
      execv(args[0], args);
      _exit(127);
    }
    if (pid < 0) break;
    waitpid(pid, NULL, 0);
    execs++;
  }
  printf("{\"execs\":%ld,\"seconds\":%.6f}\n", execs, now() - start);
  return 0;
}
