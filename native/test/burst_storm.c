// Kernel-side load generator for the benchmark: runs the fixture's `fixture_burst` program
// (by kernel program id) through BPF_PROG_TEST_RUN with repeat=CHUNK, so each syscall writes
// CHUNK records into the shared ring buffer; paced to RATE records/s (0 = flat out).
//   burst_storm PROG_ID COUNT [RATE] [CHUNK] [drained]
// "drained": before each chunk, wait until the reader has consumed everything in the
// program's ring buffer, so a chunk that fits the ring is never dropped (the ring reader test).
// Prints {"records":N,"seconds":S} (N = runs requested; the program counts failed reserves).
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// The consumer and producer positions of the program's ring buffer, mapped read-only.
static int map_ring(int prog_fd, volatile uint64_t **cons, volatile uint64_t **prod) {
  uint32_t ids[16];
  struct bpf_prog_info info = {.nr_map_ids = 16, .map_ids = (uint64_t)(uintptr_t)ids};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return -1;
  long page = sysconf(_SC_PAGESIZE);
  for (uint32_t i = 0; i < info.nr_map_ids && i < 16; i++) {
    int fd = bpf_map_get_fd_by_id(ids[i]);
    struct bpf_map_info mi = {0};
    uint32_t mlen = sizeof(mi);
    if (fd < 0 || bpf_obj_get_info_by_fd(fd, &mi, &mlen) != 0 || mi.type != BPF_MAP_TYPE_RINGBUF) continue;
    void *c = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
    void *p = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, page);
    if (c == MAP_FAILED || p == MAP_FAILED) return -1;
    *cons = c;
    *prod = p;
    return 0;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PROG_ID COUNT [RATE] [CHUNK] [drained]\n", argv[0]);
    return 2;
  }
  int fd = bpf_prog_get_fd_by_id(atoi(argv[1]));
  if (fd < 0) return perror("bpf_prog_get_fd_by_id"), 1;
  long count = atol(argv[2]);
  double rate = argc > 3 ? atof(argv[3]) : 0;
  long chunk = argc > 4 ? atol(argv[4]) : 1000;
  volatile uint64_t *cons = NULL, *prod = NULL;
  if (argc > 5 && strcmp(argv[5], "drained") == 0 && map_ring(fd, &cons, &prod) != 0)
    return perror("ring buffer of the program"), 1;
  unsigned char pkt[64] = {0};
  double start = now();
  long done = 0;
  while (done < count) {
    long n = count - done < chunk ? count - done : chunk;
    for (double deadline = now() + 10; cons && *cons != *prod;) {
      if (now() > deadline) return fprintf(stderr, "reader did not drain the ring\n"), 1;
      usleep(50);
    }
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
