/* The POP3 command table and the checks every command passes before its
 * handler runs. */
#include <string.h>

#include "auth/sasl.h"
#include "core/config.h"
#include "core/env.h"
#include "net/conn.h"
#include "pop3/internal.h"

static const struct pop3_command commands[] = {
    /* RFC 1939 */
    {"USER", POP3_AUTHORIZATION, 1, 1, pop3_login_user, NULL},
    {"PASS", POP3_AUTHORIZATION, 1, 1, pop3_login_pass, NULL},
    {"APOP", POP3_AUTHORIZATION, 2, 2, pop3_login_apop, NULL},
    {"QUIT", POP3_AUTHORIZATION | POP3_TRANSACTION, 0, 0, pop3_login_quit, pop3_mail_quit},
    {"STAT", POP3_TRANSACTION, 0, 0, NULL, pop3_mail_stat},
    {"LIST", POP3_TRANSACTION, 0, 1, NULL, pop3_mail_list},
    {"RETR", POP3_TRANSACTION, 1, 1, NULL, pop3_mail_retr},
    {"DELE", POP3_TRANSACTION, 1, 1, NULL, pop3_mail_dele},
    {"NOOP", POP3_TRANSACTION, 0, 0, NULL, pop3_mail_noop},
    {"RSET", POP3_TRANSACTION, 0, 0, NULL, pop3_mail_rset},
    {"TOP", POP3_TRANSACTION, 2, 2, NULL, pop3_mail_top},
    {"UIDL", POP3_TRANSACTION, 0, 1, NULL, pop3_mail_uidl},
    /* RFC 2595 */
    {"STLS", POP3_AUTHORIZATION, 0, 0, pop3_login_stls, NULL},
    /* RFC 5034 */
    {"AUTH", POP3_AUTHORIZATION, 0, 2, pop3_login_auth, NULL},
    /* RFC 2449 */
    {"CAPA", POP3_AUTHORIZATION | POP3_TRANSACTION, 0, 0, pop3_login_capa, pop3_mail_capa},
};

const struct pop3_command *pop3_command_check(struct conn *conn, enum pop3_state state, char *line,
                                              size_t len, struct pop3_cmd *cmd)
{
	switch (pop3_parse(line, len, cmd)) {
	case POP3_PARSE_OK:
		break;
	case POP3_PARSE_EMPTY:
		conn_printf(conn, "-ERR empty command line\r\n");
		return NULL;
	case POP3_PARSE_BAD_CHAR:
		conn_printf(conn, "-ERR command line contains a NUL, CR or control character\r\n");
		return NULL;
	case POP3_PARSE_KEYWORD:
		conn_printf(conn, "-ERR unknown command\r\n");
		return NULL;
	case POP3_PARSE_TOO_MANY:
		conn_printf(conn, "-ERR too many arguments\r\n");
		return NULL;
	}

	const struct pop3_command *row = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, cmd->keyword) == 0)
			row = &commands[i];
	if (row == NULL) {
		conn_printf(conn, "-ERR unknown command %s\r\n", cmd->keyword);
		return NULL;
	}
	if (!(row->states & state)) {
		conn_printf(conn, "-ERR %s is not valid in the %s state\r\n", row->name,
		            state == POP3_AUTHORIZATION ? "AUTHORIZATION" : "TRANSACTION");
		return NULL;
	}
	if (cmd->argc < row->min_args || cmd->argc > row->max_args) {
		conn_printf(conn, "-ERR wrong number of arguments for %s\r\n", row->name);
		return NULL;
	}
	return row;
}

bool pop3_stls_available(const struct worker_env *env, const struct conn *conn)
{
	return env->tls != NULL && !conn_is_tls(conn);
}

void pop3_write_capa(const struct worker_env *env, struct conn *conn, enum pop3_state state)
{
	bool login = state == POP3_AUTHORIZATION;
	bool plain_ok = pop3_plaintext_allowed(env, conn);
	unsigned char cb[32];
	bool have_cb = conn_tls_exporter(conn, cb) == 0;

	conn_printf(conn,
	            "+OK capability list follows\r\n"
	            "TOP\r\n"
	            "UIDL\r\n"
	            "%s%s%s%s%s"
	            "RESP-CODES\r\n"
	            "AUTH-RESP-CODE\r\n"
	            "PIPELINING\r\n"
	            "EXPIRE NEVER\r\n"
	            "LOGIN-DELAY 0\r\n"
	            "IMPLEMENTATION Pillar\r\n"
	            ".\r\n",
	            login && plain_ok ? "USER\r\n" : "", login ? "SASL " : "",
	            login ? sasl_mechanisms(plain_ok, have_cb) : "", login ? "\r\n" : "",
	            login && pop3_stls_available(env, conn) ? "STLS\r\n" : "");
}

bool pop3_plaintext_allowed(const struct worker_env *env, const struct conn *conn)
{
	switch (env->cfg->plaintext_auth) {
	case PLAINTEXT_AUTH_ALWAYS:
		return true;
	case PLAINTEXT_AUTH_NEVER:
		return false;
	case PLAINTEXT_AUTH_TLS:
		/* Loopback never leaves the machine: as safe as TLS. */
		return conn_is_tls(conn) || conn_peer_loopback(conn);
	}
	return false;
}
