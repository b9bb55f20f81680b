/*
 * Encryption at rest of snapshot files: AES-256-GCM (OpenSSL EVP) in
 * authenticated chunks, so a file is checked as it streams and a chunk
 * that was changed, dropped, moved or cut short fails. The layout:
 *
 *	"CKENC1\0\0" (8) | chunk size (u32 BE) | nonce prefix (4 random)
 *	then per chunk: length|FINAL<<31 (u32 BE) | ciphertext | tag (16)
 *
 * Chunk i's nonce is the file's prefix and i (u64 BE); its additional
 * data is the header and the chunk's length word, so the final flag and
 * the order are authenticated too; nothing may follow the final chunk.
 * The key (32 bytes, or 64 hex digits, in the daemon's backup_key_file)
 * is read by the child processes that need it and wiped after use; only
 * its id (the first 16 hex digits of its SHA-256) is ever written down.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "backup.h"
#include "util.h"

#define ENC_MAGIC	"CKENC1\0\0"
#define ENC_HDR		16
#define ENC_TAG		16
#define ENC_FINAL	0x80000000u

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
backup_key_load(const char *path, unsigned char *key,
    char *id, char **cause)
{
	unsigned char	 buf[130], md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen, i;
	struct stat	 st;
	ssize_t		 n;
	int		 fd, e = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		e = -errno;
		xasprintf(cause, "backup_key_file %s: %s", path, strerror(errno));
		return e;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & 077) != 0) {
		close(fd);
		xasprintf(cause, "backup_key_file %s must be a regular file "
		    "readable by its owner only (chmod 600)", path);
		return -EPERM;
	}
	n = read(fd, buf, sizeof buf);
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == BACKUP_KEY_LEN)
		memcpy(key, buf, BACKUP_KEY_LEN);
	else if (n == 2 * BACKUP_KEY_LEN) {
		for (i = 0; i < BACKUP_KEY_LEN; i++) {
			int h = hexval(buf[2 * i]), l = hexval(buf[2 * i + 1]);
			/* Not h << 4 of -1: undefined behaviour. */
			if (h < 0 || l < 0) {
				e = -EINVAL;
				break;
			}
			key[i] = (unsigned char)(h << 4 | l);
		}
	} else
		e = -EINVAL;
	explicit_bzero(buf, sizeof buf);
	if (e != 0) {
		explicit_bzero(key, BACKUP_KEY_LEN);
		xasprintf(cause, "backup_key_file %s must hold a 256-bit key: "
		    "32 bytes, or 64 hex digits (openssl rand -hex 32)", path);
		return e;
	}
	EVP_Digest(key, BACKUP_KEY_LEN, md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 8; i++)
		snprintf(id + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

struct benc {
	EVP_CIPHER_CTX	*ctx;
	const unsigned char *key;
	unsigned char	 hdr[ENC_HDR];
	uint64_t	 idx;
};

static void
chunk_nonce(const unsigned char *hdr, uint64_t idx, unsigned char *iv)
{
	int	 i;

	memcpy(iv, hdr + 12, 4);
	for (i = 0; i < 8; i++)
		iv[4 + i] = (unsigned char)(idx >> (56 - 8 * i));
}

struct benc *
backup_enc_new(const unsigned char *key, size_t chunk, unsigned char *hdr)
{
	struct benc	*b = xcalloc(1, sizeof *b);

	b->ctx = EVP_CIPHER_CTX_new();
	b->key = key;
	memcpy(b->hdr, ENC_MAGIC, 8);
	put32(b->hdr + 8, (uint32_t)chunk);
	if (RAND_bytes(b->hdr + 12, 4) != 1)
		abort();
	memcpy(hdr, b->hdr, ENC_HDR);
	return b;
}

size_t
backup_enc_header_len(void)
{
	return ENC_HDR;
}

size_t
backup_enc_chunk(struct benc *b, const unsigned char *in, size_t len,
    bool final, unsigned char *out)
{
	unsigned char	 iv[12];
	int		 n, m;

	chunk_nonce(b->hdr, b->idx++, iv);
	put32(out, (uint32_t)len | (final ? ENC_FINAL : 0));
	EVP_EncryptInit_ex(b->ctx, EVP_aes_256_gcm(), NULL, b->key, iv);
	EVP_EncryptUpdate(b->ctx, NULL, &n, b->hdr, ENC_HDR);
	EVP_EncryptUpdate(b->ctx, NULL, &n, out, 4);
	EVP_EncryptUpdate(b->ctx, out + 4, &n, in, (int)len);
	EVP_EncryptFinal_ex(b->ctx, out + 4 + n, &m);
	EVP_CIPHER_CTX_ctrl(b->ctx, EVP_CTRL_GCM_GET_TAG, ENC_TAG,
	    out + 4 + len);
	return 4 + len + ENC_TAG;
}

void
backup_enc_free(struct benc *b)
{
	if (b == NULL)
		return;
	EVP_CIPHER_CTX_free(b->ctx);
	free(b);
}

static int
read_full(int fd, unsigned char *p, size_t len)
{
	size_t	 got = 0;
	ssize_t	 r;

	while (got < len) {
		if ((r = read(fd, p + got, len - got)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (int)got;
}

static int
write_full(int fd, const unsigned char *p, size_t len)
{
	ssize_t	 w;

	while (len > 0) {
		if ((w = write(fd, p, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Decrypt src into dst; -EBADMSG when anything fails authentication. */
static int
decrypt_file(const char *src, const char *dst, const unsigned char *key)
{
	unsigned char	 hdr[ENC_HDR], lw[4], iv[12], tag[ENC_TAG];
	unsigned char	*in = NULL, *out = NULL;
	EVP_CIPHER_CTX	*ctx = EVP_CIPHER_CTX_new();
	uint32_t	 chunk, len;
	uint64_t	 idx = 0;
	bool		 final = false;
	int		 fi, fo, r, n, e = 0;

	if ((fi = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if ((fo = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) < 0) {
		e = -errno;
		close(fi);
		return e;
	}
	if (read_full(fi, hdr, ENC_HDR) != ENC_HDR ||
	    memcmp(hdr, ENC_MAGIC, 8) != 0 || (chunk = get32(hdr + 8)) == 0 ||
	    chunk > 64 * 1024 * 1024) {
		e = -EBADMSG;
		goto out;
	}
	in = xmalloc(chunk + ENC_TAG);
	out = xmalloc(chunk + 32);
	while (!final) {
		if ((r = read_full(fi, lw, 4)) != 4) {
			e = r < 0 ? r : -EBADMSG;	/* cut short */
			goto out;
		}
		len = get32(lw) & ~ENC_FINAL;
		final = (get32(lw) & ENC_FINAL) != 0;
		if (len > chunk || read_full(fi, in, len + ENC_TAG) !=
		    (int)(len + ENC_TAG)) {
			e = -EBADMSG;
			goto out;
		}
		memcpy(tag, in + len, ENC_TAG);
		chunk_nonce(hdr, idx++, iv);
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv);
		EVP_DecryptUpdate(ctx, NULL, &n, hdr, ENC_HDR);
		EVP_DecryptUpdate(ctx, NULL, &n, lw, 4);
		EVP_DecryptUpdate(ctx, out, &n, in, (int)len);
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENC_TAG, tag);
		if (EVP_DecryptFinal_ex(ctx, out + n, &r) != 1) {
			e = -EBADMSG;
			goto out;
		}
		if ((e = write_full(fo, out, len)) != 0)
			goto out;
	}
	if (read_full(fi, lw, 1) != 0)
		e = -EBADMSG;		/* something after the final chunk */
out:
	EVP_CIPHER_CTX_free(ctx);
	free(in);
	if (out != NULL) {
		explicit_bzero(out, chunk + 32);
		free(out);
	}
	close(fi);
	if (close(fo) != 0 && e == 0)
		e = -errno;
	return e;
}

int
backup_decrypt_all(json_t *manifest, char **files, const char *workdir,
    const char *key_file, int fd)
{
	json_t		*enc = json_object_get(manifest, "encryption");
	const char	*scheme = json_string_value(json_object_get(enc,
	    "scheme"));
	const char	*want = json_string_value(json_object_get(enc,
	    "key_id"));
	unsigned char	 key[BACKUP_KEY_LEN];
	char		 id[17], *cause = NULL, *dst;
	size_t		 i;
	int		 e;

	if (scheme == NULL || strcmp(scheme, "none") == 0)
		return 0;
	if (strcmp(scheme, BACKUP_SCHEME) != 0) {
		dprintf(fd, "snapshot encryption scheme %s is not supported",
		    scheme);
		return -1;
	}
	if (key_file == NULL) {
		dprintf(fd, "the snapshot is encrypted (key %s) and the daemon "
		    "configuration has no backup_key_file", want ? want : "?");
		return -1;
	}
	if (backup_key_load(key_file, key, id, &cause) != 0) {
		dprintf(fd, "%s", cause);
		free(cause);
		return -1;
	}
	if (want == NULL || strcmp(want, id) != 0) {
		explicit_bzero(key, sizeof key);
		dprintf(fd, "the snapshot was encrypted with key %s, "
		    "backup_key_file holds key %s", want ? want : "?", id);
		return -1;
	}
	for (i = 0; files[i] != NULL; i++) {
		xasprintf(&dst, "%s/plain-%zu.rdb", workdir, i);
		if ((e = decrypt_file(files[i], dst, key)) != 0) {
			explicit_bzero(key, sizeof key);
			(void)unlink(dst);
			dprintf(fd, "%s %s", files[i], e == -EBADMSG ?
			    "fails authentication (AES-256-GCM): corrupt or "
			    "tampered with; nothing was restored" :
			    strerror(-e));
			return -1;
		}
		free(files[i]);
		files[i] = dst;
	}
	explicit_bzero(key, sizeof key);
	return 0;
}
