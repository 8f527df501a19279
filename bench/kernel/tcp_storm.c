// TCP storm for the kernel benchmark: loopback connect -> accept -> server close -> client
// close with SO_LINGER 0 (no TIME_WAIT, so ports never run out), for SECONDS.
// Prints {"connections":N,"seconds":S}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listener;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *server(void *arg) {
  (void)arg;
  for (;;) {
    int c = accept(listener, NULL, NULL);
    if (c < 0) return NULL;
    close(c);
  }
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 1.0;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(addr);
  listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) || listen(listener, 4096)) return perror("listen"), 1;
  getsockname(listener, (struct sockaddr *)&addr, &len);
  pthread_t t;
  pthread_create(&t, NULL, server, NULL);
  struct linger lin = {.l_onoff = 1, .l_linger = 0};
  long conns = 0;
  double start = now();
  while (now() - start < seconds) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) break;
    if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
      char b;
      (void)!read(s, &b, 1);  // wait for the server's FIN
      conns++;
    }
    setsockopt(s, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    close(s);
  }
  printf("{\"connections\":%ld,\"seconds\":%.6f}\n", conns, now() - start);
  return 0;
}
