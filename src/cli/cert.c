#include "cli/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 825 days: the longest validity clients still accept for a server
 * certificate. */
#define CERT_DAYS 825

static int add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return -1;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

static FILE *create(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return NULL;
	fchmod(fd, mode); /* whatever the umask */
	FILE *f = fdopen(fd, "w");
	if (f == NULL)
		close(fd);
	return f;
}

int cert_make_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
                         char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	FILE *kf = NULL, *cf = NULL;
	unsigned char serial[16];
	char san[600];
	int rc = -1;

	if (key == NULL || cert == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
		goto done;
	serial[0] &= 0x7f; /* a positive serial number */
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL) {
		BN_free(bn);
		goto done;
	}
	BN_free(bn);
	X509_set_version(cert, X509_VERSION_3);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), (long)CERT_DAYS * 24 * 3600);
	X509_NAME *name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1,
	                           -1, 0);
	X509_set_issuer_name(cert, name);
	X509_set_pubkey(cert, key);
	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", hostname);
	if (add_ext(cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    add_ext(cert, NID_key_usage, "critical,digitalSignature,keyCertSign") < 0 ||
	    add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(cert, NID_subject_key_identifier, "hash") < 0 ||
	    X509_sign(cert, key, EVP_sha256()) == 0)
		goto done;

	kf = create(key_path, 0600);
	if (kf == NULL) {
		snprintf(err, errlen, "%s: %s", key_path, strerror(errno));
		goto out;
	}
	cf = create(cert_path, 0644);
	if (cf == NULL) {
		snprintf(err, errlen, "%s: %s", cert_path, strerror(errno));
		goto out;
	}
	if (PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_X509(cf, cert) != 1)
		goto done;
	if (fflush(kf) != 0 || fsync(fileno(kf)) != 0 || fflush(cf) != 0 ||
	    fsync(fileno(cf)) != 0) {
		snprintf(err, errlen, "cannot write the certificate: %s", strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
done : {
	const char *why = ERR_reason_error_string(ERR_get_error());
	snprintf(err, errlen, "cannot make a certificate: %s", why != NULL ? why : "unknown error");
}
out:
	if (kf != NULL && fclose(kf) != 0)
		rc = -1;
	if (cf != NULL && fclose(cf) != 0)
		rc = -1;
	if (rc < 0) { /* remove only what this call created */
		if (kf != NULL)
			unlink(key_path);
		if (cf != NULL)
			unlink(cert_path);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}
