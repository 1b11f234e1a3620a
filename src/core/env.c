#include "core/env.h"

#include <event2/event.h>
#include <string.h>

void env_init(struct worker_env *env)
{
	memset(env, 0, sizeof(*env));
	env->clients.next = env->clients.prev = &env->clients;
}

void env_client_add(struct worker_env *env, struct env_client *client)
{
	client->next = env->clients.next;
	client->prev = &env->clients;
	env->clients.next->prev = client;
	env->clients.next = client;
	env->nclients++;
}

void env_client_remove(struct worker_env *env, struct env_client *client)
{
	if (client->next == NULL)
		return;
	client->prev->next = client->next;
	client->next->prev = client->prev;
	client->next = client->prev = NULL;
	env->nclients--;
	/* Once a second at most, however many go meanwhile. */
	if (env->trim != NULL && !evtimer_pending(env->trim, NULL))
		evtimer_add(env->trim, &(struct timeval){.tv_sec = 1});
	if (env->stopping && env->nclients == 0)
		event_base_loopexit(env->base, NULL);
}

void env_shutdown_clients(struct worker_env *env)
{
	struct env_client *c = env->clients.next;
	while (c != &env->clients) {
		/* shutdown may remove c from the list; step first. */
		struct env_client *next = c->next;
		c->shutdown(c);
		c = next;
	}
}
