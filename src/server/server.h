/* `pillar serve`: the master process (DESIGN §3). It binds every listener the
 * config names, forks the workers, drops them to run_as, restarts a worker
 * that dies, reloads on SIGHUP and stops gracefully on SIGTERM/SIGINT. */
#ifndef PILLAR_SERVER_SERVER_H
#define PILLAR_SERVER_SERVER_H

#include <stdbool.h>

struct config;

/* Runs until stopped; returns the process exit status. Takes ownership of
 * cfg. In the foreground logs go to stderr and the process does not detach. */
int server_run(struct config *cfg, bool foreground);

#endif
