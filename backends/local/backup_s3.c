/*
 * Off-host copies of snapshots in S3 (daemon config backups.s3), for the
 * child processes of local_backup.c and local_restore.c only: it uses
 * libcurl's easy (blocking) API, which is right in a child and wrong on
 * the daemon's loop. Requests are path-style
 * (ENDPOINT/BUCKET/PREFIXSNAP/FILE), signed with the project's SigV4
 * module; bodies stream from the files with their SHA-256 from the
 * manifest, parts of a multipart upload as UNSIGNED-PAYLOAD. Each request
 * is retried (backups.s3.retries, backoff from 0.5s) on a transport error,
 * 5xx or 429. The manifest goes up last and comes down first and is
 * deleted first, so a partial upload or deletion never looks complete.
 * Credentials are the daemon's: its credentials chain (credchain.h, the
 * one the ElastiCache backend uses) runs on the loop, and the child gets
 * what it found. A request that S3 refuses because they expired ends the
 * child with -EKEYEXPIRED, so the daemon fetches new ones and tries again.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "backup.h"
#include "dconf.h"
#include "elasticache/creds.h"
#include "elasticache/sigv4.h"
#include "util.h"

struct s3c {
	const struct dconf_s3	*conf;
	struct aws_creds	 creds;
	char			*base;		/* scheme://host[:port] */
	char			*host;
	CURL			*h;
	bool			 expired;	/* S3 said so */
};

struct s3body {				/* what a request sends */
	int		 fd;
	off_t		 off;
	size_t		 left;
	const char	*mem;
};

static size_t
s3_read(char *buf, size_t size, size_t n, void *arg)
{
	struct s3body	*b = arg;
	size_t		 want = size * n < b->left ? size * n : b->left;
	ssize_t		 r;

	if (want == 0)
		return 0;
	if (b->mem != NULL) {
		memcpy(buf, b->mem, want);
		b->mem += want;
		b->left -= want;
		return want;
	}
	if ((r = pread(b->fd, buf, want, b->off)) <= 0)
		return CURL_READFUNC_ABORT;
	b->off += r;
	b->left -= (size_t)r;
	return (size_t)r;
}

static size_t
s3_collect(char *p, size_t size, size_t n, void *arg)
{
	strbuf_add(arg, p, size * n);
	return size * n;
}

struct s3hdr {
	char	*etag;
};

static size_t
s3_header(char *p, size_t size, size_t n, void *arg)
{
	struct s3hdr	*h = arg;
	size_t		 len = size * n;

	if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		const char *v = p + 5;
		size_t l = len - 5;

		while (l > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			l--;
		}
		while (l > 0 && (v[l - 1] == '\r' || v[l - 1] == '\n'))
			l--;
		free(h->etag);
		h->etag = xstrndup(v, l);
	}
	return len;
}

/* Percent-encode a key, '/' kept. */
static char *
s3_path(struct s3c *s, const char *key)
{
	struct strbuf	 sb;
	const char	*p;

	strbuf_init(&sb);
	strbuf_printf(&sb, "/%s/", s->conf->bucket);
	for (p = key; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p) != NULL)
			strbuf_add(&sb, p, 1);
		else
			strbuf_printf(&sb, "%%%02X", (unsigned char)*p);
	}
	return strbuf_detach(&sb);
}

/*
 * One signed request, retried. body may be NULL. Returns the HTTP status
 * (2xx: done), or -1 after the retries with *cause.
 */
static long
s3_request(struct s3c *s, const char *method, const char *key,
    const char *query, struct s3body *body, const char *payload_hash,
    struct strbuf *out, char **etag, char **cause)
{
	struct sigv4_header	 hdrs[1];
	struct sigv4_request	 req;
	struct sigv4_params	 prm;
	struct sigv4_signed	 sg;
	struct curl_slist	*sl;
	struct s3body		 b0;
	struct s3hdr		 hh;
	struct strbuf		 sb;
	char			*path = s3_path(s, key), *url, *hostline;
	char			 errbuf[CURL_ERROR_SIZE];
	long			 status = -1;
	int			 attempt, i;
	CURLcode		 rc;

	xasprintf(&url, "%s%s%s%s", s->base, path, query ? "?" : "",
	    query ? query : "");
	for (attempt = 0; attempt <= s->conf->retries; attempt++) {
		if (attempt > 0)
			usleep((useconds_t)(500000U << (attempt - 1 < 5 ?
			    attempt - 1 : 5)));
		hdrs[0].name = "Host";
		hdrs[0].value = s->host;
		memset(&req, 0, sizeof req);
		req.method = method;
		req.path = path;
		req.query = query;
		req.headers = hdrs;
		req.nheaders = 1;
		req.payload_hash = payload_hash;
		memset(&prm, 0, sizeof prm);
		prm.access_key_id = s->creds.access_key_id;
		prm.secret_access_key = s->creds.secret_access_key;
		prm.session_token = s->creds.session_token;
		prm.region = s->conf->region;
		prm.service = "s3";
		prm.when = time(NULL);
		prm.flags = SIGV4_SINGLE_ENCODE | SIGV4_CONTENT_SHA256;
		if (sigv4_sign(&req, &prm, SIGV4_HEADER, &sg, cause) != 0)
			break;
		sl = NULL;
		xasprintf(&hostline, "Host: %s", s->host);
		sl = curl_slist_append(sl, hostline);
		free(hostline);
		for (i = 0; sg.headers[i] != NULL; i++)
			sl = curl_slist_append(sl, sg.headers[i]);
		sl = curl_slist_append(sl, "Expect:");
		sigv4_signed_free(&sg);
		curl_easy_reset(s->h);
		curl_easy_setopt(s->h, CURLOPT_URL, url);
		curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, sl);
		curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
		curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(s->h, CURLOPT_LOW_SPEED_TIME, 60L);
		curl_easy_setopt(s->h, CURLOPT_ERRORBUFFER, errbuf);
		strbuf_init(&sb);
		curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, s3_collect);
		curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &sb);
		memset(&hh, 0, sizeof hh);
		curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, s3_header);
		curl_easy_setopt(s->h, CURLOPT_HEADERDATA, &hh);
		if (strcmp(method, "HEAD") == 0)
			curl_easy_setopt(s->h, CURLOPT_NOBODY, 1L);
		if (body != NULL) {
			b0 = *body;	/* a retry sends it all again */
			curl_easy_setopt(s->h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(s->h, CURLOPT_READFUNCTION, s3_read);
			curl_easy_setopt(s->h, CURLOPT_READDATA, &b0);
			curl_easy_setopt(s->h, CURLOPT_INFILESIZE_LARGE,
			    (curl_off_t)body->left);
		}
		errbuf[0] = '\0';
		rc = curl_easy_perform(s->h);
		curl_slist_free_all(sl);
		status = -1;
		if (rc == CURLE_OK)
			curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
		if (rc == CURLE_OK && (status == 400 || status == 403) &&
		    sb.s != NULL && (strstr(sb.s,
		    "<Code>ExpiredToken</Code>") || strstr(sb.s,
		    "<Code>TokenRefreshRequired</Code>") || strstr(sb.s,
		    "<Code>RequestExpired</Code>")))
			s->expired = true;
		if (rc == CURLE_OK && status < 500 && status != 429) {
			if (out != NULL)
				strbuf_add(out, sb.s ? sb.s : "", sb.len);
			if (etag != NULL) {
				free(*etag);
				*etag = hh.etag;
				hh.etag = NULL;
			}
			free(hh.etag);
			strbuf_free(&sb);
			break;
		}
		free(*cause);
		if (rc != CURLE_OK)
			xasprintf(cause, "%s %s: %s", method, key, errbuf[0] ?
			    errbuf : curl_easy_strerror(rc));
		else
			xasprintf(cause, "%s %s: HTTP %ld", method, key, status);
		free(hh.etag);
		strbuf_free(&sb);
		status = -1;
	}
	free(url);
	free(path);
	return status;
}

static int
s3_open(struct s3c *s, const struct dconf_s3 *conf,
    const struct aws_creds *creds, char **cause)
{
	const char	*p;
	char		*e = NULL;

	memset(s, 0, sizeof *s);
	s->conf = conf;
	if (creds == NULL || creds->access_key_id == NULL ||
	    creds->secret_access_key == NULL) {
		xasprintf(cause, "no AWS credentials for S3");
		return -EACCES;
	}
	s->creds.access_key_id = xstrdup(creds->access_key_id);
	s->creds.secret_access_key = xstrdup(creds->secret_access_key);
	if (creds->session_token != NULL)
		s->creds.session_token = xstrdup(creds->session_token);
	if (conf->endpoint != NULL)
		s->base = xstrdup(conf->endpoint);
	else
		xasprintf(&s->base, "https://s3.%s.amazonaws.com",
		    conf->region);
	while ((e = strrchr(s->base, '/')) != NULL && e[1] == '\0' &&
	    e > strstr(s->base, "//") + 1)
		*e = '\0';
	p = strstr(s->base, "//") + 2;
	s->host = xstrndup(p, strcspn(p, "/"));
	s->h = curl_easy_init();
	return 0;
}

/* r, or -EKEYEXPIRED when S3 refused the credentials as expired. */
static int
s3_close(struct s3c *s, int r)
{
	bool	 expired = s->expired;

	creds_free(&s->creds);
	if (s->h != NULL)
		curl_easy_cleanup(s->h);
	free(s->base);
	free(s->host);
	return r != 0 && expired ? -EKEYEXPIRED : r;
}

static char *
s3_key(struct s3c *s, const char *snap, const char *file)
{
	char	*k;

	xasprintf(&k, "%s%s/%s", s->conf->prefix, snap, file);
	return k;
}

/* Upload one file: a PUT, or multipart above part_size. */
static int
s3_put_file(struct s3c *s, const char *key, const char *path,
    const char *sha256, char **cause)
{
	struct s3body	 b;
	struct strbuf	 xml, ans;
	struct stat	 st;
	char		*q, *id = NULL, *etag = NULL, *e;
	off_t		 off;
	long		 st_http;
	int		 fd, part, r = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return -errno;
	}
	memset(&b, 0, sizeof b);
	b.fd = fd;
	if ((uint64_t)st.st_size <= s->conf->part_size) {
		b.left = (size_t)st.st_size;
		st_http = s3_request(s, "PUT", key, NULL, &b, sha256, NULL,
		    NULL, cause);
		close(fd);
		if (st_http < 200 || st_http > 299) {
			if (st_http > 0)
				xasprintf(cause, "PUT %s: HTTP %ld", key,
				    st_http);
			return -EIO;
		}
		return 0;
	}
	strbuf_init(&ans);
	st_http = s3_request(s, "POST", key, "uploads=", NULL,
	    SIGV4_UNSIGNED_PAYLOAD, &ans, NULL, cause);
	if (st_http == 200 && ans.s != NULL && (id = strstr(ans.s,
	    "<UploadId>")) != NULL && (e = strstr(id, "</UploadId>")) != NULL)
		id = xstrndup(id + 10, (size_t)(e - id - 10));
	else
		id = NULL;
	strbuf_free(&ans);
	if (id == NULL) {
		if (st_http > 0)
			xasprintf(cause, "starting the multipart upload of %s: "
			    "HTTP %ld", key, st_http);
		close(fd);
		return -EIO;
	}
	strbuf_init(&xml);
	strbuf_puts(&xml, "<CompleteMultipartUpload>");
	for (part = 1, off = 0; off < st.st_size; part++) {
		b.off = off;
		b.left = (size_t)((uint64_t)(st.st_size - off) <
		    s->conf->part_size ? (uint64_t)(st.st_size - off) :
		    s->conf->part_size);
		off += (off_t)b.left;
		xasprintf(&q, "partNumber=%d&uploadId=%s", part, id);
		st_http = s3_request(s, "PUT", key, q, &b,
		    SIGV4_UNSIGNED_PAYLOAD, NULL, &etag, cause);
		free(q);
		if (st_http != 200 || etag == NULL) {
			if (st_http > 0)
				xasprintf(cause, "part %d of %s: HTTP %ld",
				    part, key, st_http);
			r = -EIO;
			break;
		}
		strbuf_printf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>%s"
		    "</ETag></Part>", part, etag);
	}
	strbuf_puts(&xml, "</CompleteMultipartUpload>");
	close(fd);
	xasprintf(&q, "uploadId=%s", id);
	if (r == 0) {
		memset(&b, 0, sizeof b);
		b.mem = xml.s;
		b.left = xml.len;
		strbuf_init(&ans);
		st_http = s3_request(s, "POST", key, q, &b,
		    SIGV4_UNSIGNED_PAYLOAD, &ans, NULL, cause);
		/* S3 may answer 200 with an error in the body. */
		if (st_http != 200 || ans.s == NULL || strstr(ans.s,
		    "<Error>") != NULL) {
			if (st_http > 0)
				xasprintf(cause, "completing the upload of %s: "
				    "HTTP %ld", key, st_http);
			r = -EIO;
		}
		strbuf_free(&ans);
	}
	if (r != 0)		/* leave no parts behind to pay for */
		(void)s3_request(s, "DELETE", key, q, NULL,
		    SIGV4_UNSIGNED_PAYLOAD, NULL, NULL, &(char *){ NULL });
	free(q);
	free(etag);
	free(id);
	strbuf_free(&xml);
	return r;
}

int
backup_s3_upload(const struct dconf_s3 *conf, const struct aws_creds *creds,
    const char *dir, const char *snap, char **cause)
{
	struct s3c	 s;
	json_t		*m, *sh;
	char		*path, *key;
	size_t		 i;
	int		 r = 0;

	xasprintf(&path, "%s/manifest.json", dir);
	m = json_load_file(path, 0, NULL);
	if (m == NULL) {
		xasprintf(cause, "%s: unreadable", path);
		free(path);
		return -EINVAL;
	}
	if ((r = s3_open(&s, conf, creds, cause)) != 0) {
		json_decref(m);
		free(path);
		return r;
	}
	json_array_foreach(json_object_get(m, "shards"), i, sh) {
		const char *f = json_string_value(json_object_get(sh, "file"));
		char *fp;

		xasprintf(&fp, "%s/%s", dir, f);
		key = s3_key(&s, snap, f);
		r = s3_put_file(&s, key, fp, json_string_value(
		    json_object_get(sh, "sha256")), cause);
		free(key);
		free(fp);
		if (r != 0)
			goto out;
	}
	/* Last: only now does the copy look complete. */
	key = s3_key(&s, snap, "manifest.json");
	r = s3_put_file(&s, key, path, NULL, cause);
	free(key);
out:
	r = s3_close(&s, r);
	json_decref(m);
	free(path);
	return r;
}

int
backup_s3_delete(const struct dconf_s3 *conf, const struct aws_creds *creds,
    const char *snap, json_t *manifest, char **cause)
{
	struct s3c	 s;
	json_t		*sh;
	char		*key;
	size_t		 i;
	long		 st;
	int		 r;

	if ((r = s3_open(&s, conf, creds, cause)) != 0)
		return r;
	/* The manifest first: a half-deleted copy is an incomplete one. */
	key = s3_key(&s, snap, "manifest.json");
	st = s3_request(&s, "DELETE", key, NULL, NULL, NULL, NULL, NULL,
	    cause);
	free(key);
	if (st < 200 || (st > 299 && st != 404))
		r = -EIO;
	json_array_foreach(json_object_get(manifest, "shards"), i, sh) {
		key = s3_key(&s, snap, json_string_value(json_object_get(sh,
		    "file")));
		st = s3_request(&s, "DELETE", key, NULL, NULL, NULL, NULL,
		    NULL, cause);
		free(key);
		if (st < 200 || (st > 299 && st != 404))
			r = -EIO;
	}
	return s3_close(&s, r);
}

/* GET key into path (created 0600). */
static int
s3_get_file(struct s3c *s, const char *key, const char *path, char **cause)
{
	struct strbuf	 sb;
	long		 st;
	int		 r;

	strbuf_init(&sb);
	st = s3_request(s, "GET", key, NULL, NULL, NULL, &sb, NULL, cause);
	if (st != 200) {
		if (st > 0) {
			free(*cause);
			xasprintf(cause, "GET %s: HTTP %ld", key, st);
		}
		strbuf_free(&sb);
		return st == 404 ? -ENOENT : -EIO;
	}
	r = file_write_atomic(path, sb.s ? sb.s : "", sb.len, 0600, 1);
	if (r != 0)
		xasprintf(cause, "writing %s: %s", path, strerror(-r));
	strbuf_free(&sb);
	return r;
}

int
backup_s3_fetch(const struct dconf_s3 *conf, const struct aws_creds *creds,
    const char *state_dir, const char *snap, char **cause)
{
	struct s3c	 s;
	json_t		*m = NULL, *sh;
	char		*tmp = NULL, *dir = NULL, *key, *path;
	const char	*cluster;
	size_t		 i;
	int		 r;

	if ((r = s3_open(&s, conf, creds, cause)) != 0)
		return r;
	xasprintf(&tmp, "%s/backups/.tmp-fetch-%s", state_dir, snap);
	if ((r = mkdir_p(tmp, 0700)) != 0) {
		xasprintf(cause, "cannot create %s", tmp);
		goto out;
	}
	key = s3_key(&s, snap, "manifest.json");
	xasprintf(&path, "%s/manifest.json", tmp);
	r = s3_get_file(&s, key, path, cause);
	free(key);
	if (r == 0 && (m = json_load_file(path, 0, NULL)) == NULL)
		r = -EINVAL;
	free(path);
	if (r != 0)
		goto out;
	cluster = json_string_value(json_object_get(m, "cluster"));
	if (cluster == NULL || !backup_name_valid(cluster)) {
		xasprintf(cause, "snapshot %s in S3: bad manifest", snap);
		r = -EINVAL;
		goto out;
	}
	json_array_foreach(json_object_get(m, "shards"), i, sh) {
		const char *f = json_string_value(json_object_get(sh, "file"));

		if (f == NULL || strchr(f, '/') != NULL) {
			r = -EINVAL;
			goto out;
		}
		key = s3_key(&s, snap, f);
		xasprintf(&path, "%s/%s", tmp, f);
		r = s3_get_file(&s, key, path, cause);
		free(key);
		free(path);
		if (r != 0)
			goto out;
	}
	xasprintf(&dir, "%s/backups/%s", state_dir, cluster);
	(void)mkdir_p(dir, 0700);
	free(dir);
	xasprintf(&dir, "%s/backups/%s/%s", state_dir, cluster, snap);
	if (rename(tmp, dir) != 0) {
		r = -errno;
		xasprintf(cause, "rename %s: %s", dir, strerror(errno));
	}
out:
	r = s3_close(&s, r);
	json_decref(m);
	free(tmp);
	free(dir);
	return r;
}
