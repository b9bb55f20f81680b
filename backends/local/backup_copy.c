/*
 * Copying one snapshot file, for the copy child of local_backup.c: at the
 * disk's pace when plain (the kernel copies while a second process
 * hashes), through AES-256-GCM chunks when a key is given (backup_crypt.c).
 * Blocks: child processes only.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backup.h"
#include "util.h"

#define BK_COPY_BUF		BACKUP_CHUNK

static int
read_full(int fd, char *p, size_t len, size_t *got)
{
	ssize_t	 r;

	*got = 0;
	while (*got < len) {
		if ((r = read(fd, p + *got, len - *got)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

static int
write_hashed(int fd, EVP_MD_CTX *md, const void *p, size_t len,
    long long *size)
{
	const char	*c = p;
	ssize_t		 w;

	EVP_DigestUpdate(md, p, len);
	*size += (long long)len;
	while (len > 0) {
		if ((w = write(fd, c, len)) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

/*
 * A plain copy at the disk's pace: the kernel copies (copy_file_range,
 * no trip through user space) while a second process hashes the same
 * open file with pread; both read one inode, which Redis never rewrites
 * in place (a new save is a new file renamed over it).
 */
static int
copy_plain(int in, int out, long long *size, char *hex)
{
	unsigned char	 md[EVP_MAX_MD_SIZE + 8];
	unsigned int	 mdlen = 0;
	loff_t		 oin = 0, oout = 0;
	long long	 hashed;
	ssize_t		 n;
	size_t		 got;
	pid_t		 h, parent;
	int		 pfd[2], e = 0, status, i;

	if (pipe(pfd) != 0)
		return -errno;
	parent = getpid();
	if ((h = fork()) == 0) {
		EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
		char		*buf = xmalloc(BK_COPY_BUF);
		long long	 off = 0;

		child_die_with_parent(parent);
		close(pfd[0]);
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		while ((n = pread(in, buf, BK_COPY_BUF, off)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				_exit(1);
			}
			EVP_DigestUpdate(ctx, buf, (size_t)n);
			off += n;
		}
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		memcpy(md + mdlen, &off, 8);
		_exit(write(pfd[1], md, mdlen + 8) == (ssize_t)mdlen + 8 ? 0 :
		    1);
	}
	close(pfd[1]);
	if (h < 0) {
		close(pfd[0]);
		return -errno;
	}
	*size = 0;
	for (;;) {
		n = copy_file_range(in, &oin, out, &oout, 1 << 30, 0);
		if (n == 0)
			break;
		if (n > 0) {
			*size += n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (*size == 0 && (errno == EXDEV || errno == ENOSYS ||
		    errno == EOPNOTSUPP || errno == EINVAL)) {
			/* Not here: read and write. */
			char *buf = xmalloc(BK_COPY_BUF);

			while (e == 0 && (e = read_full(in, buf, BK_COPY_BUF,
			    &got)) == 0 && got > 0) {
				for (size_t w = 0; e == 0 && w < got; w += n)
					if ((n = write(out, buf + w, got -
					    w)) < 0) {
						n = 0;
						if (errno != EINTR)
							e = -errno;
					}
				*size += (long long)got;
				if (got < BK_COPY_BUF)
					break;
			}
			free(buf);
			break;
		}
		e = -errno;
		break;
	}
	if (e == 0 && fsync(out) != 0)
		e = -errno;
	n = read(pfd[0], md, sizeof md);
	close(pfd[0]);
	if (waitpid(h, &status, 0) != h || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || n != 32 + 8) {
		if (e == 0)
			e = -EIO;
		return e;
	}
	memcpy(&hashed, md + 32, 8);
	if (e == 0 && hashed != *size)
		e = -EIO;	/* the two did not see the same file */
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return e;
}

/*
 * In the child: copy src to dst (encrypted when key is not NULL) with
 * the SHA-256 of what is written.
 */
int
backup_copy_file(const char *src, const char *dst, const unsigned char *key,
    long long *size, char *hex)
{
	unsigned char	 md[EVP_MAX_MD_SIZE], hdr[64];
	unsigned int	 mdlen;
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	char		*buf = xmalloc(BK_COPY_BUF);
	unsigned char	*ebuf = key ? xmalloc(BK_COPY_BUF + 64) : NULL;
	struct benc	*enc = NULL;
	size_t		 got;
	int		 in, out, e = 0;

	*size = 0;
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600)) < 0) {
		e = -errno;
		close(in);
		return e;
	}
	(void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (key == NULL) {
		e = copy_plain(in, out, size, hex);
		EVP_MD_CTX_free(ctx);
		free(buf);
		close(in);
		if (close(out) != 0 && e == 0)
			e = -errno;
		return e;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	if (key != NULL) {
		enc = backup_enc_new(key, BK_COPY_BUF, hdr);
		e = write_hashed(out, ctx, hdr, backup_enc_header_len(), size);
	}
	while (e == 0) {
		if ((e = read_full(in, buf, BK_COPY_BUF, &got)) != 0)
			break;
		if (enc != NULL) {
			/* A short read is the end: the final chunk. */
			size_t n = backup_enc_chunk(enc, (unsigned char *)buf,
			    got, got < BK_COPY_BUF, ebuf);
			e = write_hashed(out, ctx, ebuf, n, size);
		} else if (got > 0)
			e = write_hashed(out, ctx, buf, got, size);
		if (got < BK_COPY_BUF)
			break;
	}
	if (e == 0 && fsync(out) != 0)
		e = -errno;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	EVP_MD_CTX_free(ctx);
	backup_enc_free(enc);
	explicit_bzero(buf, BK_COPY_BUF);
	free(buf);
	free(ebuf);
	close(in);
	if (close(out) != 0 && e == 0)
		e = -errno;
	return e;
}

