// Kernel-side load generator for the benchmark: runs the fixture's `fixture_burst` program
// (by kernel program id) through BPF_PROG_TEST_RUN with repeat=CHUNK, so each syscall writes
// CHUNK records into the shared ring buffer; paced to RATE records/s (0 = flat out).
//   burst_storm PROG_ID COUNT [RATE] [CHUNK]
// Prints {"records":N,"seconds":S} (N = runs requested; the program counts failed reserves).
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PROG_ID COUNT [RATE] [CHUNK]\n", argv[0]);
    return 2;
  }
  int fd = bpf_prog_get_fd_by_id(atoi(argv[1]));
  if (fd < 0) return perror("bpf_prog_get_fd_by_id"), 1;
  long count = atol(argv[2]);
  double rate = argc > 3 ? atof(argv[3]) : 0;
  long chunk = argc > 4 ? atol(argv[4]) : 1000;
  unsigned char pkt[64] = {0};
  double start = now();
  long done = 0;
  while (done < count) {
    long n = count - done < chunk ? count - done : chunk;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = (int)n);
    if (bpf_prog_test_run_opts(fd, &opts) != 0) return perror("bpf_prog_test_run_opts"), 1;
    done += n;
    if (rate > 0) {
      double due = start + done / rate, t;
      while ((t = now()) < due)
        if (due - t > 0.0002) usleep((useconds_t)((due - t) * 1e6 / 2));
    }
  }
  printf("{\"records\":%ld,\"seconds\":%.6f}\n", done, now() - start);
  return 0;
}
