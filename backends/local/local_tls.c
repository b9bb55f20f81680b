/*
 * Local backend: transit encryption and ACLs for a cluster's nodes.
 *
 * TLS (enable_transit_encryption): a private CA per cluster and one
 * server certificate its nodes share (they all run on this host, behind
 * the same local.bind address), generated here with OpenSSL's EVP and
 * X509 APIs under DATA_DIR/CLUSTER/tls/ (0700; keys 0600, certificates
 * 0644). ca.crt is what clients verify nodes with. The CA key is kept so
 * that the node certificate can be renewed without clients changing
 * their trust.
 *
 * ACLs (auth_token_file): the daemon speaks to the nodes as its own user,
 * "ck-admin", whose random password is DATA_DIR/CLUSTER/admin.pass
 * (0600); replication logs in as that user too (masteruser). Applications
 * log in as "default" with the token, a user without the admin and
 * dangerous command categories. node.c writes the users into redis.conf,
 * keyed by SHA-256: the token itself is never written.
 *
 * Secrets held in memory (the token, the admin password) live in their own
 * mapping excluded from core dumps (MADV_DONTDUMP) and wiped when freed.
 * Nothing here blocks for long: key generation is one EC P-256 key pair.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "local.h"
#include "log.h"
#include "node.h"
#include "util.h"

#define LTLS_CA_DAYS	3650
#define LTLS_NODE_DAYS	825
#define LACL_PASS_BYTES	32

/*
 * A secret: a private mapping of whole pages, kept out of core dumps and
 * swapped out only if mlock fails (best effort). The length lives in the
 * mapping's first word so lsecret_free needs only the pointer.
 */
char *
lsecret_dup(const char *s, size_t len)
{
	size_t	 total = sizeof(size_t) + len + 1, pg = (size_t)getpagesize();
	char	*m;

	total = (total + pg - 1) / pg * pg;
	m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE |
	    MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		fatal("mmap");
	(void)madvise(m, total, MADV_DONTDUMP);
	(void)mlock(m, total);
	memcpy(m, &total, sizeof total);
	memcpy(m + sizeof total, s, len);
	m[sizeof total + len] = '\0';
	return m + sizeof total;
}

void
lsecret_free(char *s)
{
	size_t	 total;
	char	*m;

	if (s == NULL)
		return;
	m = s - sizeof total;
	memcpy(&total, m, sizeof total);
	explicit_bzero(m, total);
	(void)munlock(m, total);
	munmap(m, total);
}

/* "#<sha256 hex>", as Redis ACL rules take a password's hash. */
void
lsecret_sha256(const char *s, char out[66])
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0, i;

	EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
	out[0] = '#';
	for (i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 1 + 2 * i, 3, "%02x", md[i]);
	out[65] = '\0';
	explicit_bzero(md, sizeof md);
}

char *
ltls_path(const struct lcluster *lc, const char *file)
{
	char	*p;

	xasprintf(&p, "%s/tls/%s", lc->dir, file);
	return p;
}

static int
write_pem(const char *path, EVP_PKEY *key, X509 *crt, unsigned int mode,
    char **cause)
{
	BIO	*b = BIO_new(BIO_s_mem());
	char	*data;
	long	 len;
	int	 r;

	if (key != NULL)
		PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_X509(b, crt);
	len = BIO_get_mem_data(b, &data);
	r = file_write_atomic(path, data, (size_t)len, mode, 1);
	if (r != 0)
		xasprintf(cause, "cannot write %s: %s", path, strerror(-r));
	if (len > 0)
		explicit_bzero(data, (size_t)len);
	BIO_free(b);
	return r;
}

static EVP_PKEY *
key_new(void)
{
	EVP_PKEY_CTX	*pc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
	EVP_PKEY	*k = NULL;

	if (pc == NULL || EVP_PKEY_keygen_init(pc) <= 0 ||
	    EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pc,
	    NID_X9_62_prime256v1) <= 0 || EVP_PKEY_keygen(pc, &k) <= 0)
		k = NULL;
	EVP_PKEY_CTX_free(pc);
	return k;
}

static int
add_ext(X509 *crt, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX	 v3;
	X509_EXTENSION	*e;
	int		 ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer, crt, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL)
		return 0;
	ok = X509_add_ext(crt, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

/* A certificate for key, signed by ca_key (itself when ca is NULL). */
static X509 *
cert_new(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key,
    int days, const char *san)
{
	X509		*crt = X509_new();
	X509_NAME	*name;
	unsigned char	 serial[16];
	BIGNUM		*bn;
	int		 ok = 1;

	if (crt == NULL)
		return NULL;
	X509_set_version(crt, 2);
	RAND_bytes(serial, sizeof serial);
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(crt), -3600);
	X509_gmtime_adj(X509_getm_notAfter(crt), (long)days * 86400);
	X509_set_pubkey(crt, key);
	name = X509_get_subject_name(crt);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
	    (const unsigned char *)"cachekeeper", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(crt, ca ? X509_get_subject_name(ca) : name);
	if (ca == NULL) {
		ok &= add_ext(crt, crt, NID_basic_constraints,
		    "critical,CA:TRUE,pathlen:0");
		ok &= add_ext(crt, crt, NID_key_usage, "critical,keyCertSign,"
		    "cRLSign");
		ok &= add_ext(crt, crt, NID_subject_key_identifier, "hash");
	} else {
		ok &= add_ext(crt, ca, NID_basic_constraints, "CA:FALSE");
		ok &= add_ext(crt, ca, NID_key_usage, "critical,"
		    "digitalSignature,keyEncipherment");
		/* Replicas and cluster peers present it as clients too. */
		ok &= add_ext(crt, ca, NID_ext_key_usage, "serverAuth,"
		    "clientAuth");
		ok &= add_ext(crt, ca, NID_subject_alt_name, san);
		ok &= add_ext(crt, ca, NID_authority_key_identifier,
		    "keyid:always");
	}
	if (!ok || X509_sign(crt, ca_key, EVP_sha256()) <= 0) {
		X509_free(crt);
		return NULL;
	}
	return crt;
}

static bool
tls_files_exist(const struct lcluster *lc)
{
	static const char *files[] = { "ca.crt", "node.crt", "node.key" };
	char		*p;
	size_t		 i;
	bool		 ok = true;

	for (i = 0; ok && i < nitems(files); i++) {
		p = ltls_path(lc, files[i]);
		ok = access(p, R_OK) == 0;
		free(p);
	}
	return ok;
}

int
ltls_ensure(struct lcluster *lc, const char *bind, char **cause)
{
	EVP_PKEY	*cak = NULL, *nk = NULL;
	X509		*ca = NULL, *crt = NULL;
	char		*dir, *p, san[300];
	int		 r = 0;

	xasprintf(&dir, "%s/tls", lc->dir);
	if ((r = mkdir_p(dir, 0700)) != 0 || chmod(dir, 0700) == -1) {
		r = r ? r : -errno;
		xasprintf(cause, "cannot create %s: %s", dir, strerror(-r));
		free(dir);
		return r;
	}
	free(dir);
	if (tls_files_exist(lc))
		return 0;
	/* An IP address in local.bind goes in as IP:, a name as DNS:. */
	if (strchr(bind, ':') != NULL || strspn(bind, "0123456789.") ==
	    strlen(bind))
		snprintf(san, sizeof san, "IP:%s,DNS:localhost", bind);
	else
		snprintf(san, sizeof san, "DNS:%s,DNS:localhost", bind);
	if ((cak = key_new()) == NULL || (nk = key_new()) == NULL ||
	    (ca = cert_new(cak, "cachekeeper CA", NULL, cak, LTLS_CA_DAYS,
	    NULL)) == NULL || (crt = cert_new(nk, lc->name, ca, cak,
	    LTLS_NODE_DAYS, san)) == NULL) {
		xasprintf(cause, "cannot make TLS certificates: OpenSSL error "
		    "%lu", ERR_get_error());
		r = -EIO;
		goto out;
	}
	/* Keys first: ca.crt last marks a complete set. */
	p = ltls_path(lc, "ca.key");
	r = write_pem(p, cak, NULL, 0600, cause);
	free(p);
	if (r == 0) {
		p = ltls_path(lc, "node.key");
		r = write_pem(p, nk, NULL, 0600, cause);
		free(p);
	}
	if (r == 0) {
		p = ltls_path(lc, "node.crt");
		r = write_pem(p, NULL, crt, 0644, cause);
		free(p);
	}
	if (r == 0) {
		p = ltls_path(lc, "ca.crt");
		r = write_pem(p, NULL, ca, 0644, cause);
		free(p);
	}
out:
	X509_free(ca);
	X509_free(crt);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(nk);
	return r;
}

/*
 * The daemon's own password for the nodes (user LACL_ADMIN_USER): read
 * from DATA_DIR/CLUSTER/admin.pass, made once with RAND_bytes.
 */
int
lacl_ensure(struct lcluster *lc, char **cause)
{
	unsigned char	 rnd[LACL_PASS_BYTES];
	char		 hex[2 * LACL_PASS_BYTES + 1], *p, *buf;
	size_t		 len, i;
	int		 r;

	lsecret_free(lc->admin_pass);
	lc->admin_pass = NULL;
	p = node_path(lc->dir, "admin.pass");
	if ((r = read_file_bounded(p, 256, &buf, &len)) == 0) {
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		if (len >= 16) {
			lc->admin_pass = lsecret_dup(buf, len);
			explicit_bzero(buf, len);
			free(buf);
			free(p);
			return 0;
		}
		explicit_bzero(buf, len);
		free(buf);
	} else if (r != -ENOENT) {
		/* A new password would lock the daemon out of its nodes. */
		xasprintf(cause, "cannot read %s: %s", p, strerror(-r));
		free(p);
		return r;
	}
	if ((r = mkdir_p(lc->dir, 0700)) != 0) {
		xasprintf(cause, "cannot create %s: %s", lc->dir, strerror(-r));
		free(p);
		return r;
	}
	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		xasprintf(cause, "RAND_bytes failed");
		free(p);
		return -EIO;
	}
	for (i = 0; i < sizeof rnd; i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	explicit_bzero(rnd, sizeof rnd);
	r = file_write_atomic(p, hex, strlen(hex), 0600, 1);
	if (r != 0)
		xasprintf(cause, "cannot write %s: %s", p, strerror(-r));
	else
		lc->admin_pass = lsecret_dup(hex, strlen(hex));
	explicit_bzero(hex, sizeof hex);
	free(p);
	return r;
}
