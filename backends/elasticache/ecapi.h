/*
 * The ElastiCache Query API (version 2015-02-02) as the backend calls it:
 * form-encoded POSTs signed with SigV4, sent through the daemon's curl-multi
 * client, with the credentials chain of the AWS SDKs resolved and refreshed
 * asynchronously, throttling and transient failures retried with full
 * jitter, and a token bucket that keeps the daemon's call rate polite.
 *
 * Credentials come from the chain of credchain.h (the environment, the
 * shared files with elasticache.profile, web identity, IMDSv2), refreshed
 * before they expire and again when AWS says ExpiredToken.
 *
 * One per daemon. Nothing here logs above debug, and never a secret.
 */
#ifndef CK_ECAPI_H
#define CK_ECAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ecxml.h"
#include "retry.h"
#include "schema.h"

#define ECAPI_VERSION		"2015-02-02"
#define ECAPI_MAX_ATTEMPTS	8	/* throttling and transient errors */
#define ECAPI_TIMEOUT_MS	20000

struct event_base;
struct dconf;
struct ecapi;
struct ecapi_call;

/*
 * The outcome of one call, after its retries. err: 0 for a 2xx answer
 * (body holds it), else a negative errno: -EREMOTEIO for an AWS error
 * (aws holds Code and Message, cls its class), -ETIMEDOUT, -ECONNRESET...
 * for transport trouble that outlived the retries, -EACCES when no
 * credentials could be found. message: one line for people, never a
 * secret. Valid only during the callback.
 */
struct ecapi_result {
	int			 err;
	enum ec_error_class	 cls;
	struct ec_error		 aws;
	long			 status;
	const char		*body;
	size_t			 len;
	const char		*message;
	unsigned int		 attempts;
};

typedef void (*ecapi_cb)(const struct ecapi_result *, void *arg);

struct ecapi_stats {
	uint64_t	 calls;		/* requests sent, retries included */
	uint64_t	 ok;
	uint64_t	 errors;
	uint64_t	 retries;
	uint64_t	 throttled;
	uint64_t	 creds_fetches;
};

struct ecapi	*ecapi_new(struct event_base *, const struct dconf *);
void		 ecapi_free(struct ecapi *);
/* The daemon's configuration after a reload (region, endpoint...). */
void		 ecapi_set_conf(struct ecapi *, const struct dconf *);

/*
 * Call action with params (names as the API reference spells them,
 * "Tags.Tag.1.Key"; values unencoded). cb runs exactly once from the loop,
 * unless ecapi_cancel() comes first. Params are copied.
 */
struct ecapi_call *ecapi_call(struct ecapi *, const char *action,
		    const struct kvlist *params, ecapi_cb cb, void *arg);
void		 ecapi_cancel(struct ecapi_call *);

const struct ecapi_stats *ecapi_stats(const struct ecapi *);
/* Requests sent per action, for the benchmark and logs. */
uint64_t	 ecapi_action_count(const struct ecapi *, const char *action);
/* Where the credentials in use came from ("environment", "imds"...). */
const char	*ecapi_creds_source(const struct ecapi *);

/* RFC 3986 percent-encoding of s (unreserved characters kept). */
char		*ecapi_urlencode(const char *s);
/* ISO 8601 UTC ("2026-12-01T10:00:00Z", fractions allowed) to seconds. */
int64_t		 ecapi_parse_iso8601(const char *s);

#endif
