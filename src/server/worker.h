/* A worker process's state, shared by worker.c (the loop, signals,
 * housekeeping) and accept.c (new connections: limits, PROXY header, TLS,
 * the protocol). Private to src/server. */
#ifndef PILLAR_SERVER_WORKER_H
#define PILLAR_SERVER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/env.h"
#include "server/listeners.h"

struct evconnlistener;
struct event;
struct iplimit;
struct proxy_net;
struct pending;
struct handoff;

struct worker_listener {
	struct worker *w;
	enum listener_proto proto;
	struct evconnlistener *evl;
	struct event *backoff;
};

struct worker {
	struct worker_env env; /* first: handoff.c finds the worker from it */
	struct event *cleanup_timer;
	bool cleanup_running;
	int cleanup_removed;
	struct iplimit *ipl;
	unsigned slot;
	struct proxy_net *proxies; /* trusted_proxies, parsed */
	size_t nproxies;
	struct pending *pending;   /* connections waiting for their PROXY header */
	struct handoff *handoff;   /* login workers: to the mail workers */
	struct event *handoff_rx;  /* mail workers: from the login workers */
	const uint8_t *ticket_key; /* mail workers: login tickets (auth/ticket.h) */
	struct worker_listener *listeners;
	size_t nlisteners;
	struct event *sig_term, *sig_int, *sig_usr1, *stop_timer;
};

/* The listeners' accept callback. */
void worker_accept(struct evconnlistener *evl, int fd, struct sockaddr *sa, int salen, void *arg);

/* Close connections still waiting for a PROXY header (worker exit). */
void worker_accept_cleanup(struct worker *w);

#endif
