/* The hand-off from login workers to mail workers, over one
 * SOCK_SEQPACKET socketpair shared by all of them (see handoff.c). Private
 * to src/server. */
#ifndef PILLAR_SERVER_HANDOFF_H
#define PILLAR_SERVER_HANDOFF_H

struct worker;
struct handoff;
struct event;

/* Login workers: send over fd (sets w->env.handoff). */
struct handoff *handoff_sender_new(struct worker *w, int fd);
/* Close what is still queued (their clients see the connection close). */
void handoff_sender_free(struct handoff **ho);

/* Mail workers: take sessions from fd; event_free the result at exit (or
 * event_del it to stop taking new ones while draining). */
struct event *handoff_receiver_new(struct worker *w, int fd);

#endif
