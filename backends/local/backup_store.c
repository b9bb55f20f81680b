/*
 * Snapshots on disk: listing, finding and deleting them (see backup.h).
 * Used by the control socket and by local_backup.c's retention. Reads
 * only directory entries and manifests of a few hundred bytes.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "backup.h"
#include "util.h"

/* rm -r of a snapshot directory: files only, one level. */
static void
rm_files(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	char		*path;

	if ((d = opendir(dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			xasprintf(&path, "%s/%s", dir, de->d_name);
			(void)unlink(path);
			free(path);
		}
		closedir(d);
	}
	(void)rmdir(dir);
}

bool
backup_name_valid(const char *s)
{
	size_t	 i, n = strlen(s);

	if (n == 0 || n > BACKUP_NAME_MAX || s[0] < 'a' || s[0] > 'z')
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		    s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* Remove every .tmp-* directory in dir: what a crash left half written. */
void
backup_clean_tmp(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	char		*path;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".tmp-", 5) != 0)
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		rm_files(path);
		free(path);
	}
	closedir(d);
}

/* A snapshot's manifest, or NULL when it has none (or a broken one). */
static json_t *
manifest_load(const char *dir)
{
	char	*path;
	json_t	*j;

	xasprintf(&path, "%s/manifest.json", dir);
	j = json_load_file(path, 0, NULL);
	free(path);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static json_int_t
manifest_size(json_t *m)
{
	json_t		*sh;
	json_int_t	 sum = 0;
	size_t		 i;

	json_array_foreach(json_object_get(m, "shards"), i, sh)
		sum += json_integer_value(json_object_get(sh, "size"));
	return sum;
}

static int
entry_cmp(const void *a, const void *b)
{
	json_t *const	*x = a, *const *y = b;

	return strcmp(json_string_value(json_object_get(*x, "created_at")),
	    json_string_value(json_object_get(*y, "created_at")));
}

static void
list_cluster(const char *root, const char *cluster, json_t *out)
{
	DIR		*d;
	struct dirent	*de;
	char		*dir, *sdir;
	json_t		*m, *enc;

	xasprintf(&dir, "%s/%s", root, cluster);
	if ((d = opendir(dir)) == NULL) {
		free(dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;	/* ., .., .tmp-*: not complete */
		xasprintf(&sdir, "%s/%s", dir, de->d_name);
		m = manifest_load(sdir);
		free(sdir);
		if (m == NULL || !json_is_string(json_object_get(m,
		    "created_at")))
			goto next;
		enc = json_object_get(m, "encryption");
		json_array_append_new(out, json_pack("{s:s, s:s, s:O?, s:O?, "
		    "s:I, s:b, s:O?}", "name", de->d_name, "cluster", cluster,
		    "type", json_object_get(m, "type"), "created_at",
		    json_object_get(m, "created_at"), "size",
		    manifest_size(m), "encrypted", enc != NULL && strcmp(
		    json_string_value(json_object_get(enc, "scheme")) ?
		    json_string_value(json_object_get(enc, "scheme")) : "none",
		    "none") != 0, "created_at_unix", json_object_get(m,
		    "created_at_unix")));
next:
		json_decref(m);
	}
	closedir(d);
	free(dir);
}

json_t *
backup_list(const char *state_dir, const char *cluster)
{
	json_t		*out = json_array(), **v;
	char		*root;
	DIR		*d;
	struct dirent	*de;
	size_t		 i, n;

	xasprintf(&root, "%s/backups", state_dir);
	if (cluster != NULL)
		list_cluster(root, cluster, out);
	else if ((d = opendir(root)) != NULL) {
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				list_cluster(root, de->d_name, out);
		closedir(d);
	}
	free(root);
	/* Oldest first, whichever cluster. */
	n = json_array_size(out);
	v = xcalloc(n + 1, sizeof *v);
	for (i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(out, i));
	qsort(v, n, sizeof *v, entry_cmp);
	json_array_clear(out);
	for (i = 0; i < n; i++)
		json_array_append_new(out, v[i]);
	free(v);
	return out;
}

char *
backup_find(const char *state_dir, const char *snap)
{
	char		*root, *dir;
	DIR		*d;
	struct dirent	*de;
	json_t		*m;

	if (!backup_name_valid(snap))
		return NULL;
	xasprintf(&root, "%s/backups", state_dir);
	if ((d = opendir(root)) == NULL) {
		free(root);
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		xasprintf(&dir, "%s/%s/%s", root, de->d_name, snap);
		if ((m = manifest_load(dir)) != NULL) {
			json_decref(m);
			closedir(d);
			free(root);
			return dir;
		}
		free(dir);
	}
	closedir(d);
	free(root);
	return NULL;
}

int
backup_delete(const char *state_dir, const char *snap, char **cause)
{
	char		*dir, *trash;
	int		 r = 0;

	if (!backup_name_valid(snap)) {
		xasprintf(cause, "'%s' is not a snapshot name (a-z first, "
		    "then a-z 0-9 -, at most %d characters)", snap,
		    BACKUP_NAME_MAX);
		return -EINVAL;
	}
	if ((dir = backup_find(state_dir, snap)) == NULL) {
		xasprintf(cause, "no snapshot named '%s'", snap);
		return -ENOENT;
	}
	/*
	 * Rename it out of sight first: a crash half way leaves a .tmp
	 * directory, never a snapshot with files missing.
	 */
	xasprintf(&trash, "%.*s/.tmp-del-%s", (int)(strrchr(dir, '/') - dir),
	    dir, snap);
	if (rename(dir, trash) != 0) {
		r = -errno;
		xasprintf(cause, "cannot delete %s: %s", dir, strerror(errno));
		goto out;
	}
	rm_files(trash);
out:
	free(trash);
	free(dir);
	return r;
}

int
backup_verify_file(const char *path, const char *sha256, long long size)
{
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen, i;
	char		 hex[2 * EVP_MAX_MD_SIZE + 1];
	EVP_MD_CTX	*ctx;
	char		*buf;
	ssize_t		 r;
	long long	 total = 0;
	int		 fd, e = 0;

	if (sha256 == NULL)
		return -EBADMSG;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	ctx = EVP_MD_CTX_new();
	buf = xmalloc(1024 * 1024);
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while ((r = read(fd, buf, 1024 * 1024)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			e = -errno;
			break;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		total += r;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	if (e != 0)
		return e;
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (total != size || strcmp(hex, sha256) != 0)
		return -EBADMSG;
	return 0;
}
