// Load generator for the map-lifetime test: creates and removes COUNT cgroups under PARENT
// (a cgroup v2 directory), one after the other. In every EVERY-th one a forked child moves
// itself in, spins briefly, sends one UDP datagram to itself on loopback (so kt_cpu and
// kt_net get an entry for the cgroup), writes and fsyncs 4 KiB every FSYNC-th time (kt_block),
// and exits; the parent reaps it and removes the cgroup.
//   cgroup_churn PARENT COUNT EVERY FSYNC IDS_FILE
// IDS_FILE gets one line per cgroup that ran a child: its v2 id (the directory's inode).
// Prints one JSON line: {"cgroups":..,"children":..,"fsyncs":..,"seconds":..}.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// The child: join the cgroup, burn a little CPU, loop one datagram back to itself.
static int child(const char *dir, int fsync_file) {
  char path[4200];  // dir (< 4096) + "/cgroup.procs"
  snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, "0", 1) != 1) return 10;
  close(fd);
  volatile unsigned long x = 0;
  for (unsigned long i = 0; i < 20000; i++) x += i;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0)
    return 11;
  char buf[64] = "ktrail";
  if (sendto(s, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a) != sizeof buf) return 12;
  if (recv(s, buf, sizeof buf, 0) != sizeof buf) return 13;
  if (fsync_file >= 0) {
    char block[4096];
    memset(block, 'k', sizeof block);
    if (pwrite(fsync_file, block, sizeof block, 0) != sizeof block || fsync(fsync_file) != 0) return 14;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s PARENT COUNT EVERY FSYNC IDS_FILE\n", argv[0]);
    return 2;
  }
  const char *parent = argv[1];
  long count = atol(argv[2]), every = atol(argv[3]), fsync_every = atol(argv[4]);
  FILE *ids = fopen(argv[5], "w");
  if (ids == NULL || every <= 0) {
    perror("ids file / EVERY");
    return 2;
  }
  char file[4200];
  snprintf(file, sizeof file, "%s.data", argv[5]);
  int fsync_file = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fsync_file < 0) {
    perror(file);
    return 2;
  }
  double start = now();
  long children = 0, fsyncs = 0;
  for (long i = 0; i < count; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/c%ld", parent, i);
    if (mkdir(dir, 0755) != 0) {
      fprintf(stderr, "mkdir %s: %s\n", dir, strerror(errno));
      return 1;
    }
    if (i % every == 0) {
      struct stat st;
      if (stat(dir, &st) != 0) return 1;
      int do_fsync = fsync_every > 0 && children % fsync_every == 0;
      pid_t pid = fork();
      if (pid == 0) _exit(child(dir, do_fsync ? fsync_file : -1));
      int status = 0;
      if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child in %s failed: status %d\n", dir, status);
        return 1;
      }
      fprintf(ids, "%llu\n", (unsigned long long)st.st_ino);
      children++;
      fsyncs += do_fsync;
    }
    // An exited child may still be leaving the cgroup for a moment.
    for (int tries = 0; rmdir(dir) != 0; tries++) {
      if (errno != EBUSY || tries > 1000) {
        fprintf(stderr, "rmdir %s: %s\n", dir, strerror(errno));
        return 1;
      }
      usleep(100);
    }
  }
  fclose(ids);
  close(fsync_file);
  unlink(file);
  printf("{\"cgroups\":%ld,\"children\":%ld,\"fsyncs\":%ld,\"seconds\":%.3f}\n", count, children, fsyncs,
         now() - start);
  return 0;
}
