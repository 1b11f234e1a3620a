/* libFuzzer target: the configuration file (core/config.h).
 *
 * Input: the contents of pillar.conf, written to a scratch file and read
 * with config_load; the first line is also given to config_check_listen
 * and config_check_cidr on its own.
 *
 * Checked besides the sanitizers' findings:
 *   - a refused file yields at least one error, each naming the file;
 *   - an accepted configuration keeps the rules the loader promises:
 *     absolute state_dir and mail_root, tls_cert and tls_key paired,
 *     pop3s_listen only with a certificate, pop3_idle_timeout never below
 *     RFC 1939's 10 minutes, 1..256 workers, every listener and trusted
 *     proxy valid by the shared syntax checks;
 *   - config_dump's output (`pillar check --verbose`) loads back without
 *     errors to a configuration that dumps identically. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "core/config.h"

static char *paths[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (int i = 0; i < 2; i++) {
		size_t n = strlen(fuzz_scratch_dir()) + 32;
		paths[i] = malloc(n);
		snprintf(paths[i], n, "%s/pillar-%d.conf", fuzz_scratch_dir(), i);
	}
	return 0;
}

static char *dump(const struct config *cfg, size_t *len_r)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len_r);

	if (f == NULL)
		abort();
	config_dump(cfg, f);
	if (fclose(f) != 0)
		abort();
	return buf;
}

static void check_config(const struct config *cfg)
{
	char why[CONFIG_WHY_MAX];

	FUZZ_CHECK(cfg->state_dir != NULL && cfg->state_dir[0] == '/', "state_dir not absolute");
	FUZZ_CHECK(cfg->mail_root != NULL && cfg->mail_root[0] == '/', "mail_root not absolute");
	FUZZ_CHECK(cfg->directory != NULL && cfg->hostname != NULL && cfg->run_as != NULL,
	           "a string key without its default");
	FUZZ_CHECK(cfg->tls_cert.count == cfg->tls_key.count, "%zu tls_cert, %zu tls_key",
	           cfg->tls_cert.count, cfg->tls_key.count);
	FUZZ_CHECK(cfg->pop3s_listen.count == 0 || cfg->tls_cert.count > 0,
	           "pop3s_listen without a certificate");
	FUZZ_CHECK(cfg->pop3_idle_timeout >= POP3_MIN_IDLE_TIMEOUT_MS,
	           "pop3_idle_timeout %llu ms below RFC 1939's 10 minutes",
	           (unsigned long long)cfg->pop3_idle_timeout);
	FUZZ_CHECK(cfg->workers >= 1 && cfg->workers <= 256, "workers = %u", cfg->workers);
	FUZZ_CHECK(cfg->plaintext_auth == PLAINTEXT_AUTH_TLS ||
	               cfg->plaintext_auth == PLAINTEXT_AUTH_ALWAYS ||
	               cfg->plaintext_auth == PLAINTEXT_AUTH_NEVER,
	           "plaintext_auth %d", (int)cfg->plaintext_auth);
	const struct strlist *lists[] = {&cfg->pop3_listen, &cfg->pop3s_listen, &cfg->smtp_listen,
	                                 &cfg->lmtp_listen};
	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		for (size_t i = 0; i < lists[l]->count; i++)
			FUZZ_CHECK(config_check_listen(lists[l]->items[i], why) == 0,
			           "accepted listener \"%s\" fails config_check_listen",
			           lists[l]->items[i]);
	}
	for (size_t i = 0; i < cfg->trusted_proxies.count; i++)
		FUZZ_CHECK(config_check_cidr(cfg->trusted_proxies.items[i], why) == 0,
		           "accepted proxy \"%s\" fails config_check_cidr",
		           cfg->trusted_proxies.items[i]);
}

static void check_errors(const struct strlist *errors)
{
	FUZZ_CHECK(errors->count > 0, "config refused without an error message");
	for (size_t i = 0; i < errors->count; i++)
		FUZZ_CHECK(strncmp(errors->items[i], paths[0], strlen(paths[0])) == 0,
		           "error does not name the file: %s", errors->items[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL, *again = NULL;
	struct strlist errors = {0};

	fuzz_write_file(paths[0], data, size);
	if (config_load(paths[0], &cfg, &errors) < 0) {
		FUZZ_CHECK(cfg == NULL, "config returned with an error");
		check_errors(&errors);
	} else {
		FUZZ_CHECK(cfg != NULL && errors.count == 0, "config accepted with errors");
		check_config(cfg);
		size_t len1, len2;
		char *d1 = dump(cfg, &len1);
		fuzz_write_file(paths[1], d1, len1);
		strlist_free(&errors);
		if (config_load(paths[1], &again, &errors) < 0)
			fuzz_fail("the dump does not load: %s\n%s",
			          errors.count > 0 ? errors.items[0] : "?", d1);
		char *d2 = dump(again, &len2);
		FUZZ_CHECK(len1 == len2 && memcmp(d1, d2, len1) == 0,
		           "dump, load, dump changes the configuration:\n%s\n----\n%s", d1, d2);
		free(d1);
		free(d2);
		config_free(&again);
		config_free(&cfg);
	}
	strlist_free(&errors);

	/* The first line alone, through the shared syntax checks. */
	size_t n = 0;
	while (n < size && data[n] != '\n' && data[n] != '\0')
		n++;
	char *line = malloc(n + 1);
	char why[CONFIG_WHY_MAX];
	memcpy(line, data, n);
	line[n] = '\0';
	if (config_check_listen(line, why) < 0)
		FUZZ_CHECK(why[0] != '\0' && strlen(why) < CONFIG_WHY_MAX, "no reason given");
	if (config_check_cidr(line, why) < 0)
		FUZZ_CHECK(why[0] != '\0' && strlen(why) < CONFIG_WHY_MAX, "no reason given");
	free(line);
	return 0;
}
