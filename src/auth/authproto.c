/* The auth process's messages. See authproto.h.
 *
 * One table says which fields each type has, of what kind and how long at
 * most; the encoder and the decoder both walk it, so the two cannot
 * disagree about a layout. */
#include "auth/authproto.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/apop.h"
#include "auth/sasl.h"
#include "auth/ticket.h"
#include "auth/verify.h"
#include "directory/directory.h"

#define HEADER_LEN 8
/* listen(2) backlog: every worker makes one connection, at start or
 * after its connection broke; they queue here while the auth process is
 * being restarted. */
#define AUTHP_BACKLOG 256

enum kind {
	K_U32,
	K_STR, /* required */
	K_OPT, /* may be absent */
	K_BYTES,
};

enum slot {
	S_SESSION,
	S_RESULT,
	S_USER,
	S_PASSWORD,
	S_TIMESTAMP,
	S_DIGEST,
	S_MECH,
	S_CB,
	S_IN,
	S_OUT,
	S_ADDRESS,
	S_LOGIN_NAME,
	S_ERROR,
	S_TICKET,
};

struct field {
	enum kind kind;
	enum slot slot;
	uint16_t max; /* string: characters without the NUL; u32: largest value */
};

#define MAX_FIELDS 7

static const struct layout {
	uint16_t type;
	unsigned nfields;
	struct field f[MAX_FIELDS];
} layouts[] = {
    {AUTHP_PASS, 2, {{K_STR, S_USER, DIR_ADDRESS_MAX}, {K_STR, S_PASSWORD, AUTH_PASSWORD_MAX}}},
    {AUTHP_APOP,
     3,
     {{K_STR, S_USER, DIR_ADDRESS_MAX},
      {K_STR, S_TIMESTAMP, APOP_TIMESTAMP_MAX},
      {K_STR, S_DIGEST, APOP_DIGEST_HEX_LEN}}},
    {AUTHP_SASL_START,
     4,
     {{K_U32, S_SESSION, 0},
      {K_STR, S_MECH, AUTHP_MECH_MAX},
      {K_BYTES, S_CB, AUTHP_CB_MAX},
      {K_OPT, S_IN, SASL_B64_MAX}}},
    {AUTHP_SASL_STEP, 2, {{K_U32, S_SESSION, 0}, {K_OPT, S_IN, SASL_B64_MAX}}},
    {AUTHP_SASL_END, 1, {{K_U32, S_SESSION, 0}}},
    {AUTHP_VERIFY_REPLY,
     4,
     {{K_U32, S_RESULT, AUTH_TEMPFAIL},
      {K_OPT, S_ADDRESS, DIR_ADDRESS_MAX},
      {K_OPT, S_ERROR, AUTHP_ERROR_MAX},
      {K_BYTES, S_TICKET, TICKET_SIZE}}},
    {AUTHP_SASL_REPLY,
     7,
     {{K_U32, S_RESULT, SASL_MALFORMED},
      {K_OPT, S_OUT, SASL_B64_MAX},
      {K_OPT, S_ADDRESS, DIR_ADDRESS_MAX},
      {K_OPT, S_LOGIN_NAME, DIR_ADDRESS_MAX},
      {K_OPT, S_ERROR, AUTHP_ERROR_MAX},
      {K_STR, S_MECH, AUTHP_MECH_MAX},
      {K_BYTES, S_TICKET, TICKET_SIZE}}},
};
#define NLAYOUTS (sizeof(layouts) / sizeof(layouts[0]))

static const struct layout *find_layout(uint16_t type)
{
	for (size_t i = 0; i < NLAYOUTS; i++)
		if (layouts[i].type == type)
			return &layouts[i];
	return NULL;
}

int authp_is_request(uint16_t type)
{
	return type >= AUTHP_PASS && type <= AUTHP_SASL_END;
}

/* Where a slot lives in the message. */
static const char **str_slot(struct authp_msg *m, enum slot s)
{
	switch (s) {
	case S_USER:
		return &m->user;
	case S_PASSWORD:
		return &m->password;
	case S_TIMESTAMP:
		return &m->timestamp;
	case S_DIGEST:
		return &m->digest;
	case S_MECH:
		return &m->mech;
	case S_IN:
		return &m->in;
	case S_OUT:
		return &m->out;
	case S_ADDRESS:
		return &m->address;
	case S_LOGIN_NAME:
		return &m->login_name;
	case S_ERROR:
		return &m->error;
	default:
		return NULL;
	}
}

static uint32_t *u32_slot(struct authp_msg *m, enum slot s)
{
	return s == S_SESSION ? &m->session : &m->result;
}

static const uint8_t **bytes_slot(struct authp_msg *m, enum slot s, size_t **len_r)
{
	*len_r = s == S_CB ? &m->cb_len : &m->ticket_len;
	return s == S_CB ? &m->cb : &m->ticket;
}

/* ---- encoding ---- */

struct writer {
	uint8_t *buf;
	size_t size, len;
	bool overflow;
};

static void put(struct writer *w, const void *p, size_t n)
{
	if (w->overflow || n > w->size - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

static void put_u16(struct writer *w, uint16_t v)
{
	put(w, &v, sizeof(v));
}

static void put_u32(struct writer *w, uint32_t v)
{
	put(w, &v, sizeof(v));
}

int authp_encode(const struct authp_msg *m, uint8_t *buf, size_t size, const char **error_r)
{
	const struct layout *l = find_layout(m->type);
	struct authp_msg copy = *m; /* the slot helpers want a mutable one */
	struct writer w = {buf, size, 0, false};

	if (l == NULL) {
		*error_r = "unknown message type";
		return -1;
	}
	if ((m->id == 0) != (m->type == AUTHP_SASL_END)) {
		*error_r = "bad request id";
		return -1;
	}
	put_u16(&w, m->type);
	put_u16(&w, 0);
	put_u32(&w, m->id);
	for (unsigned i = 0; i < l->nfields; i++) {
		const struct field *f = &l->f[i];

		if (f->kind == K_U32) {
			uint32_t v = *u32_slot(&copy, f->slot);

			if (f->slot == S_SESSION ? v == 0 : v > f->max) {
				*error_r = "value out of range";
				return -1;
			}
			put_u32(&w, v);
		} else if (f->kind == K_BYTES) {
			size_t *len;
			const uint8_t *p = *bytes_slot(&copy, f->slot, &len);

			if (*len > f->max || (p == NULL && *len > 0)) {
				*error_r = "field too long";
				return -1;
			}
			put_u16(&w, (uint16_t)*len);
			if (*len > 0)
				put(&w, p, *len);
		} else {
			const char *s = *str_slot(&copy, f->slot);

			if (s == NULL) {
				if (f->kind == K_STR) {
					*error_r = "required field missing";
					return -1;
				}
				put_u16(&w, 0);
				continue;
			}
			size_t n = strnlen(s, (size_t)f->max + 1);
			if (n > f->max) {
				*error_r = "field too long";
				return -1;
			}
			put_u16(&w, (uint16_t)(n + 1));
			put(&w, s, n + 1);
		}
	}
	if (w.overflow) {
		*error_r = "message too long";
		return -1;
	}
	return (int)w.len;
}

/* ---- decoding ---- */

struct reader {
	const uint8_t *p;
	size_t left;
};

static bool get(struct reader *r, void *out, size_t n)
{
	if (n > r->left)
		return false;
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
	return true;
}

int authp_decode(const uint8_t *buf, size_t len, struct authp_msg *m, const char **error_r)
{
	struct reader r = {buf, len};
	const struct layout *l;
	uint16_t type, zero;

	memset(m, 0, sizeof(*m));
	if (len > AUTHP_MSG_MAX) {
		*error_r = "message too long";
		return -1;
	}
	if (!get(&r, &type, sizeof(type)) || !get(&r, &zero, sizeof(zero)) ||
	    !get(&r, &m->id, sizeof(m->id))) {
		*error_r = "short header";
		return -1;
	}
	l = find_layout(type);
	if (l == NULL || zero != 0) {
		*error_r = "unknown message type";
		return -1;
	}
	m->type = type;
	if ((m->id == 0) != (type == AUTHP_SASL_END)) {
		*error_r = "bad request id";
		return -1;
	}
	for (unsigned i = 0; i < l->nfields; i++) {
		const struct field *f = &l->f[i];
		uint16_t n;

		if (f->kind == K_U32) {
			uint32_t v;

			if (!get(&r, &v, sizeof(v))) {
				*error_r = "truncated message";
				return -1;
			}
			if (f->slot == S_SESSION ? v == 0 : v > f->max) {
				*error_r = "value out of range";
				return -1;
			}
			*u32_slot(m, f->slot) = v;
			continue;
		}
		if (!get(&r, &n, sizeof(n)) || n > r.left) {
			*error_r = "truncated message";
			return -1;
		}
		if (f->kind == K_BYTES) {
			if (n > f->max) {
				*error_r = "field too long";
				return -1;
			}
			size_t *blen;
			*bytes_slot(m, f->slot, &blen) = n > 0 ? r.p : NULL;
			*blen = n;
		} else if (n == 0) {
			if (f->kind == K_STR) {
				*error_r = "required field missing";
				return -1;
			}
		} else {
			const char *s = (const char *)r.p;

			if (n > (size_t)f->max + 1) {
				*error_r = "field too long";
				return -1;
			}
			/* Exactly one NUL, at the end: the text is a C string
			 * in place, and nothing hides after a NUL. */
			if (s[n - 1] != '\0' || memchr(s, '\0', (size_t)n - 1) != NULL) {
				*error_r = "bad string";
				return -1;
			}
			*str_slot(m, f->slot) = s;
		}
		r.p += n;
		r.left -= n;
	}
	if (r.left != 0) {
		*error_r = "trailing bytes";
		return -1;
	}
	return 0;
}

/* ---- the socket ---- */

int authp_listen(struct authp_addr *addr_r, const char **error_r)
{
	static __thread char err[128];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	socklen_t len = sizeof(sa_family_t);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(addr_r, 0, sizeof(*addr_r));
	if (fd < 0) {
		snprintf(err, sizeof(err), "socket: %s", strerror(errno));
		*error_r = err;
		return -1;
	}
	/* An address of only the family asks the kernel for a fresh
	 * abstract name (unix(7), "Autobind feature"). */
	if (bind(fd, (struct sockaddr *)&sun, len) < 0 || listen(fd, AUTHP_BACKLOG) < 0) {
		snprintf(err, sizeof(err), "bind/listen: %s", strerror(errno));
		*error_r = err;
		close(fd);
		return -1;
	}
	len = sizeof(addr_r->sun);
	if (getsockname(fd, (struct sockaddr *)&addr_r->sun, &len) < 0 ||
	    len <= sizeof(sa_family_t) || len > sizeof(addr_r->sun)) {
		snprintf(err, sizeof(err), "getsockname: %s", strerror(errno));
		*error_r = err;
		close(fd);
		return -1;
	}
	addr_r->len = len;
	return fd;
}

const char *authp_addr_str(const struct authp_addr *addr, char *buf, size_t size)
{
	size_t n = addr->len > sizeof(sa_family_t) ? addr->len - sizeof(sa_family_t) : 0;
	size_t used = 0;

	if (size == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used + 2 < size; i++) {
		char c = addr->sun.sun_path[i];
		buf[used++] = c == '\0' ? '@' : (c >= 0x21 && c <= 0x7e ? c : '?');
	}
	buf[used] = '\0';
	return buf;
}
