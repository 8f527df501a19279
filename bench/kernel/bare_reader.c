// The limit for the kernel-capture benchmark: the same objects, loaded the same way as the
// addon (one shared kt_events ring buffer and kt_drops array reused by every object, kt_cfg_*
// written into .rodata), read by a plain C loop that only frames and counts records.
//   bare_reader [--ringbuf BYTES] [--drain-us N] [--prog NAME]... [--cfg NAME=VALUE]... OBJECT...
// --drain-us: sleep N µs after a poll that found records (the addon's drainIntervalUs).
// Prints "ready <id of the first loaded program>" once attached; on SIGINT/SIGTERM drains the ring and prints one JSON line:
// {"records":N,"bytes":N,"kernelDrops":N,"seconds":S,"cpuSeconds":C} (C: this reader's CPU time).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_OBJS 16
#define MAX_LIST 64

static volatile sig_atomic_t stop;
static uint64_t records, bytes;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int on_sample(void *ctx, void *data, size_t size) {
  (void)ctx;
  uint32_t rsize;
  if (size < 8) return 0;
  memcpy(&rsize, (char *)data + 4, 4);  // frame by the header's size, as the addon does
  if (rsize < 8 || rsize > size) return 0;
  records++;
  bytes += (rsize + 7) & ~7u;
  return 0;
}

static int silent(enum libbpf_print_level level, const char *fmt, va_list ap) {
  return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// kt_cfg_* values into .rodata, and kt_cfg_wakeup_bytes capped at half the ring, as the addon does.
static void set_cfg(struct bpf_object *obj, char **names, long long *values, int n, unsigned long ringbuf) {
  const struct btf *btf = bpf_object__btf(obj);
  struct bpf_map *m, *rodata = NULL;
  bpf_object__for_each_map(m, obj) {
    const char *name = bpf_map__name(m);
    size_t len = strlen(name);
    if (bpf_map__is_internal(m) && len >= 7 && strcmp(name + len - 7, ".rodata") == 0) rodata = m;
  }
  if (!btf || !rodata) return;
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return;
  const struct btf_type *sec = btf__type_by_id(btf, sec_id);
  size_t size;
  const void *initial = bpf_map__initial_value(rodata, &size);
  char *data = malloc(size);
  memcpy(data, initial, size);
  const struct btf_var_secinfo *vsi = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vsi++) {
    const char *var = btf__name_by_offset(btf, btf__type_by_id(btf, vsi->type)->name_off);
    for (int j = 0; j < n; j++)
      if (strcmp(var, names[j]) == 0 && vsi->offset + vsi->size <= size)
        memcpy(data + vsi->offset, &values[j], vsi->size);  // little-endian
    uint32_t wakeup;
    if (strcmp(var, "kt_cfg_wakeup_bytes") == 0 && vsi->size == 4 && vsi->offset + 4 <= size) {
      memcpy(&wakeup, data + vsi->offset, 4);
      if (wakeup > ringbuf / 2) wakeup = ringbuf / 2;
      memcpy(data + vsi->offset, &wakeup, 4);
    }
  }
  bpf_map__set_initial_value(rodata, data, size);
  free(data);
}

int main(int argc, char **argv) {
  const char *objs[MAX_OBJS];
  char *progs[MAX_LIST], *cfg_names[MAX_LIST];
  long long cfg_values[MAX_LIST];
  int nobj = 0, nprog = 0, ncfg = 0;
  unsigned long ringbuf = 8u << 20;
  long drain_us = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--ringbuf") && i + 1 < argc) ringbuf = strtoul(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--drain-us") && i + 1 < argc) drain_us = atol(argv[++i]);
    else if (!strcmp(argv[i], "--prog") && i + 1 < argc && nprog < MAX_LIST) progs[nprog++] = argv[++i];
    else if (!strcmp(argv[i], "--cfg") && i + 1 < argc && ncfg < MAX_LIST) {
      char *eq = strchr(argv[++i], '=');
      if (!eq) return 2;
      *eq = 0;
      cfg_names[ncfg] = argv[i];
      cfg_values[ncfg++] = strtoll(eq + 1, NULL, 0);
    } else if (nobj < MAX_OBJS) objs[nobj++] = argv[i];
  }
  libbpf_set_print(silent);
  struct bpf_object *obj[MAX_OBJS];
  for (int i = 0; i < nobj; i++) {
    obj[i] = bpf_object__open_file(objs[i], NULL);
    if (!obj[i]) { fprintf(stderr, "open %s: %s\n", objs[i], strerror(errno)); return 1; }
  }
  // Shared maps, defined by the first object that declares them.
  const char *shared[] = {"kt_events", "kt_drops", "kt_cgroup_allow"};
  int shared_fd[3] = {-1, -1, -1};
  for (int s = 0; s < 3; s++) {
    for (int i = 0; i < nobj && shared_fd[s] < 0; i++) {
      struct bpf_map *m = bpf_object__find_map_by_name(obj[i], shared[s]);
      if (!m) continue;
      uint32_t max = s == 0 ? ringbuf : bpf_map__max_entries(m);
      shared_fd[s] = bpf_map_create(bpf_map__type(m), shared[s], bpf_map__key_size(m), bpf_map__value_size(m), max, NULL);
      if (shared_fd[s] < 0) { fprintf(stderr, "create %s: %s\n", shared[s], strerror(errno)); return 1; }
    }
  }
  for (int i = 0; i < nobj; i++) {
    struct bpf_program *p;
    bpf_object__for_each_program(p, obj[i]) {
      int want = nprog == 0;
      for (int j = 0; j < nprog; j++) want |= !strcmp(progs[j], bpf_program__name(p));
      bpf_program__set_autoload(p, want);
    }
    for (int s = 0; s < 3; s++) {
      struct bpf_map *m = bpf_object__find_map_by_name(obj[i], shared[s]);
      if (m && shared_fd[s] >= 0) bpf_map__reuse_fd(m, shared_fd[s]);
    }
    set_cfg(obj[i], cfg_names, cfg_values, ncfg, ringbuf);
    if (bpf_object__load(obj[i])) { fprintf(stderr, "load %s: %s\n", objs[i], strerror(errno)); return 1; }
    bpf_object__for_each_program(p, obj[i]) {
      if (!bpf_program__autoload(p)) continue;
      struct bpf_link *l;
      if (bpf_program__type(p) == BPF_PROG_TYPE_CGROUP_SKB) {
        static int cg = -1;
        if (cg < 0) cg = open("/sys/fs/cgroup/unified", 0);
        l = bpf_program__attach_cgroup(p, cg);
      } else {
        l = bpf_program__attach(p);
      }
      if (!l && errno != EOPNOTSUPP) fprintf(stderr, "attach %s: %s\n", bpf_program__name(p), strerror(errno));
    }
  }
  struct ring_buffer *rb = ring_buffer__new(shared_fd[0], on_sample, NULL, NULL);
  if (!rb) { fprintf(stderr, "ring_buffer__new: %s\n", strerror(errno)); return 1; }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  // The first loaded program's kernel id lets a generator run it (BPF_PROG_TEST_RUN).
  uint32_t first_id = 0;
  for (int i = 0; i < nobj && !first_id; i++) {
    struct bpf_program *p;
    bpf_object__for_each_program(p, obj[i]) {
      struct bpf_prog_info info = {};
      uint32_t len = sizeof(info);
      if (!first_id && bpf_program__fd(p) >= 0 && !bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
        first_id = info.id;
    }
  }
  printf("ready %u\n", first_id);
  fflush(stdout);
  double start = now(), cpu_start = cpu_seconds();
  while (!stop) {
    int n = ring_buffer__poll(rb, 10);
    if (n == 0) n = ring_buffer__consume(rb);  // records submitted with BPF_RB_NO_WAKEUP
    if (n < 0 && n != -EINTR) break;
    if (n > 0 && drain_us > 0) usleep(drain_us);
  }
  ring_buffer__consume(rb);
  double seconds = now() - start, cpu = cpu_seconds() - cpu_start;
  uint64_t drops = 0;
  if (shared_fd[1] >= 0) {
    int ncpu = libbpf_num_possible_cpus();
    uint64_t *v = calloc(ncpu, sizeof(uint64_t));
    for (uint32_t slot = 0; bpf_map_lookup_elem(shared_fd[1], &slot, v) == 0; slot++)
      for (int c = 0; c < ncpu; c++) drops += v[c];
    free(v);
  }
  printf("{\"records\":%llu,\"bytes\":%llu,\"kernelDrops\":%llu,\"seconds\":%.3f,\"cpuSeconds\":%.4f}\n",
         (unsigned long long)records, (unsigned long long)bytes, (unsigned long long)drops, seconds, cpu);
  ring_buffer__free(rb);
  for (int i = 0; i < nobj; i++) bpf_object__close(obj[i]);
  return 0;
}
