/*
 * Snapshots of local clusters on disk, as the control socket sees them:
 * STATE_DIR/backups/CLUSTER/SNAPSHOT/ with the RDB files and a
 * manifest.json written last (a directory without one is a snapshot being
 * written, or one that failed half way, and is never listed). Taking
 * snapshots is local_backup.c's; this is listing and deleting, which only
 * read a few small files and never wait on a node.
 */
#ifndef CK_LOCAL_BACKUP_H
#define CK_LOCAL_BACKUP_H

#include <stdbool.h>

#include <jansson.h>

#define BACKUP_NAME_MAX	80	/* CLUSTER-auto-YYYYMMDDHHMM fits */

/* Whether s is a snapshot name: a-z first, then a-z 0-9 -. */
bool	 backup_name_valid(const char *s);
/* Remove the .tmp-* directories (half-written snapshots) in dir. */
void	 backup_clean_tmp(const char *dir);

/*
 * Every complete snapshot under state_dir (only cluster's when it is not
 * NULL), oldest first: an array of {name, cluster, type, created_at,
 * size, encrypted}. Never NULL.
 */
json_t	*backup_list(const char *state_dir, const char *cluster);
/*
 * Delete snapshot snap, whichever cluster it belongs to. 0, or -ENOENT
 * (no such snapshot), -EINVAL (not a valid snapshot name) or -errno,
 * with a reason in *cause.
 */
int	 backup_delete(const char *state_dir, const char *snap, char **cause);
/*
 * The directory of snapshot snap (complete: its manifest is there), the
 * caller frees it; NULL when there is none.
 */
char	*backup_find(const char *state_dir, const char *snap);

/*
 * Whether the file at path has this size and SHA-256 (lower-case hex):
 * 0, -EBADMSG when it does not, or -errno when it cannot be read.
 */
int	 backup_verify_file(const char *path, const char *sha256,
	    long long size);
/*
 * Restore: decrypt the snapshot's files (the manifest's "encryption")
 * into workdir with the key in key_file, replacing files[i] by the
 * plaintext copies; nothing to do for "none". 0, or -1 after writing
 * why to fd. For child processes (it blocks).
 */
int	 backup_decrypt_all(json_t *manifest, char **files,
	    const char *workdir, const char *key_file, int fd);

/*
 * S3 (backup_s3.c), for child processes only: they block. creds: what
 * the daemon's credentials chain found (local_s3_creds()), copied. 0, or
 * -errno with *cause: -EACCES without credentials, -EKEYEXPIRED when S3
 * refused them as expired (fetch new ones, try again). Objects are
 * PREFIX/SNAP/FILE, the manifest last up, first down and first deleted.
 */
struct dconf_s3;
struct aws_creds;
int	 backup_s3_upload(const struct dconf_s3 *, const struct aws_creds *,
	    const char *dir, const char *snap, char **cause);
int	 backup_s3_delete(const struct dconf_s3 *, const struct aws_creds *,
	    const char *snap, json_t *manifest, char **cause);
/* Fetch snapshot snap into STATE_DIR/backups/CLUSTER/SNAP. */
int	 backup_s3_fetch(const struct dconf_s3 *, const struct aws_creds *,
	    const char *state_dir, const char *snap, char **cause);
/* The exit status of an S3 child that got -EKEYEXPIRED. */
#define BACKUP_S3_EXIT_EXPIRED	3
#define BACKUP_S3_PENDING	".s3-pending"	/* in a snapshot's dir */

/*
 * Copy src to dst (created 0600, fsynced), encrypted with key when it is
 * not NULL; *size and hex (64 digits) are those of what was written.
 * 0 or -errno. Blocks: for child processes (backup_copy.c).
 */
int	 backup_copy_file(const char *src, const char *dst,
	    const unsigned char *key, long long *size, char *hex);

/* Encryption (backup_crypt.c). */
#define BACKUP_KEY_LEN		32
#define BACKUP_SCHEME		"aes-256-gcm-chunked"
#define BACKUP_CHUNK		(1024 * 1024)	/* plaintext bytes */
/*
 * Read the key in path (0600 or stricter, 32 bytes or 64 hex digits) and
 * its id (16 hex digits of its SHA-256). 0 or -errno with *cause.
 */
int	 backup_key_load(const char *path, unsigned char *key, char *id,
	    char **cause);
struct benc;
/* An encryptor for one file; hdr gets backup_enc_header_len() bytes. */
struct benc	*backup_enc_new(const unsigned char *key, size_t chunk,
		    unsigned char *hdr);
size_t		 backup_enc_header_len(void);
/* Encrypt one chunk (len <= chunk) into out (len + 20 bytes). */
size_t		 backup_enc_chunk(struct benc *, const unsigned char *in,
		    size_t len, bool final, unsigned char *out);
void		 backup_enc_free(struct benc *);

#endif
