/*
 * The AWS credentials chain, resolved and refreshed asynchronously on the
 * daemon's loop, first source that answers: AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY (/AWS_SESSION_TOKEN); the shared credentials and
 * config files with a profile (the one set here, AWS_PROFILE, "default");
 * web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE through STS
 * AssumeRoleWithWebIdentity at AWS_ENDPOINT_URL_STS or sts.REGION); the
 * EC2 instance metadata service with IMDSv2
 * (AWS_EC2_METADATA_SERVICE_ENDPOINT or 169.254.169.254;
 * AWS_EC2_METADATA_DISABLED=true skips it). Credentials that expire are
 * fetched again before they do (a fifth of their life, at most 5 minutes,
 * ahead), and at once after credchain_expire().
 *
 * Every user of AWS in the daemon takes its credentials from one of
 * these: the ElastiCache API client (ecapi.c) and the S3 copies of the
 * local backend's snapshots (local_backup.c, local_restore.c). The plain
 * reads are creds.c's; this adds the order, the asynchronous sources and
 * the refresh. At most one fetch runs at a time.
 *
 * Nothing here logs above debug, and never a secret.
 */
#ifndef CK_CREDCHAIN_H
#define CK_CREDCHAIN_H

#include <stdint.h>

#include "creds.h"

#define CREDCHAIN_RETRY_MS	5000	/* after finding nothing */
#define CREDCHAIN_MARGIN_S	300	/* refresh before expiry */

struct http;
struct credchain;

/*
 * Called from the loop when a fetch that credchain_get() started ends,
 * well or badly: ask again. Never called from inside credchain_get().
 */
typedef void (*credchain_cb)(void *arg);

/*
 * A chain fetching over http (borrowed: it must outlive the chain). name
 * prefixes its debug lines ("elasticache", "s3"). cb may be NULL for a
 * user that polls.
 */
struct credchain *credchain_new(struct http *http, const char *name,
		    credchain_cb cb, void *arg);
/* Cancels a fetch in flight (cb is not called), wipes the secrets. */
void		 credchain_free(struct credchain *);
/*
 * The profile for the shared files (NULL: AWS_PROFILE, else "default")
 * and the region of STS (NULL: us-east-1). Copied; credentials in hand
 * are kept.
 */
void		 credchain_configure(struct credchain *,
		    const char *profile, const char *region);
/*
 * 1 with *out pointing at fresh credentials (valid until the next call
 * into the chain); 0 while a fetch runs, cb follows; -EACCES when the
 * chain found nothing less than CREDCHAIN_RETRY_MS ago, with *why (a
 * line for people, "no AWS credentials: ..."; valid until the next call).
 * The environment and the shared files are read at once, so a chain that
 * finds them answers 1 on the first call.
 */
int		 credchain_get(struct credchain *,
		    const struct aws_creds **out, const char **why);
/* AWS said the credentials expired: the next credchain_get() fetches. */
void		 credchain_expire(struct credchain *);
/* Where the credentials in use came from; NULL when there are none. */
const char	*credchain_source(const struct credchain *);
/* Fetches started so far, for statistics. */
uint64_t	 credchain_fetches(const struct credchain *);

#endif
