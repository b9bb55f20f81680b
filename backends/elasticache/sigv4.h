/*
 * AWS Signature Version 4 (AWS4-HMAC-SHA256) for HTTP requests, in both
 * forms: an Authorization header, or a presigned query string. Pure: the
 * caller passes the request, the credentials and the clock, and gets
 * strings back; nothing is sent, nothing is logged. Used by the
 * ElastiCache Query API client and meant for S3 as well (see the flags).
 *
 * Not covered: chunked (aws-chunked) payload signing, SigV4a, and the
 * choice of which headers to sign: every header the caller passes is
 * signed, so pass only those that go out exactly as given (not
 * User-Agent or Expect that the HTTP library may rewrite).
 */
#ifndef CK_SIGV4_H
#define CK_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_ALGORITHM		"AWS4-HMAC-SHA256"
#define SIGV4_UNSIGNED_PAYLOAD	"UNSIGNED-PAYLOAD"
#define SIGV4_EXPIRES_MAX_S	604800	/* seconds: 7 days, AWS's limit */

/* One request header; names compare case-insensitively. */
struct sigv4_header {
	const char	*name;
	const char	*value;
};

/*
 * The request as it goes on the wire. Nothing is copied or kept.
 *
 * path: as sent, percent-encoded once ("/", "/my%20key"); NULL or ""
 * means "/". query: as sent, without the '?' (NULL or "" for none);
 * '+' is a literal plus sign, write spaces as %20. headers: in the order
 * they are sent, duplicates allowed (their values are joined in that
 * order); a folded value (line break followed by blanks) is accepted.
 * A Host header is required. payload_hash: NULL for the SHA-256 of
 * body/body_len, or the value to use instead (64 lowercase hex digits
 * computed elsewhere, or SIGV4_UNSIGNED_PAYLOAD for S3).
 */
struct sigv4_request {
	const char			*method;
	const char			*path;
	const char			*query;
	const struct sigv4_header	*headers;
	size_t				 nheaders;
	const void			*body;
	size_t				 body_len;
	const char			*payload_hash;
};

/*
 * The canonical path is normalized: empty, "." and ".." segments removed
 * as RFC 3986 does, a trailing '/' kept. Every service but S3.
 */
#define SIGV4_NORMALIZE_PATH	0x01
/*
 * S3: the path is encoded once (decoded, then encoded with the unreserved
 * set). Without it, the path as sent is encoded again, which is the
 * "double encoding" all other services expect: "/a%20b" signs as
 * "/a%2520b".
 */
#define SIGV4_SINGLE_ENCODE	0x02
/*
 * Header form: send and sign x-amz-content-sha256 with the payload hash
 * (S3 requires it; the AWS test suite calls this "sign_body").
 */
#define SIGV4_CONTENT_SHA256	0x04
/*
 * The session token is sent but left out of what is signed, for the few
 * services that want it so (the test suite's "omit_session_token").
 */
#define SIGV4_UNSIGNED_TOKEN	0x08

/*
 * Who signs, where, and when. The strings are borrowed, never copied or
 * logged; the secret only feeds the key derivation, whose intermediate
 * keys are wiped. session_token: NULL or "" for long-term keys.
 * region and service: as in the credential scope ("us-east-1",
 * "elasticache"). when: the signing time, UTC seconds; AWS rejects
 * signatures more than 5 minutes off its clock. expires_s: presigned
 * requests only, 1..SIGV4_EXPIRES_MAX_S.
 */
struct sigv4_params {
	const char	*access_key_id;
	const char	*secret_access_key;
	const char	*session_token;
	const char	*region;
	const char	*service;
	time_t		 when;
	unsigned int	 expires_s;	/* seconds */
	unsigned int	 flags;		/* SIGV4_* */
};

enum sigv4_form {
	SIGV4_HEADER,		/* Authorization header */
	SIGV4_QUERY,		/* presigned URL */
};

/*
 * What signing produced; every string is owned by the struct.
 * headers (header form): a NULL-terminated list of "Name: value" lines
 * to add to the request as they are (curl_slist_append() takes them),
 * X-Amz-Date, X-Amz-Security-Token and x-amz-content-sha256 as needed,
 * Authorization last. query (query form): the complete query string to
 * send, without '?': the request's own query as given, then the X-Amz-*
 * parameters and X-Amz-Signature.
 */
struct sigv4_signed {
	char	*canonical_request;
	char	*string_to_sign;
	char	*signature;		/* 64 lowercase hex digits */
	char	*authorization;		/* header form only, else NULL */
	char	**headers;		/* header form only, else NULL */
	char	*query;			/* query form only, else NULL */
};

/*
 * Sign req in the given form and fill *out (zeroed first). 0, or
 * -EINVAL with *cause (caller frees; cause may be NULL) when the request
 * or the parameters cannot be signed: no Host header, a header or query
 * parameter the signer adds itself (X-Amz-Date, Authorization,
 * X-Amz-Signature, ...) already present, a malformed %-escape in the
 * query, a line break in a header value that is not a fold, a bad
 * expires_s, a time that does not fit a four-digit year. -EIO when
 * OpenSSL fails. On error *out holds nothing to free, but
 * sigv4_signed_free() is harmless.
 */
int	 sigv4_sign(const struct sigv4_request *req,
	    const struct sigv4_params *params, enum sigv4_form form,
	    struct sigv4_signed *out, char **cause);
/* Wipe and free what out holds (it carries the session token); NULL ok. */
void	 sigv4_signed_free(struct sigv4_signed *out);

/*
 * The steps of sigv4_sign() on their own, for callers that sign
 * something else than one request (S3 chunk signatures later), and for
 * debugging a SignatureDoesNotMatch: AWS's error message shows its own
 * canonical request and string to sign. Same errors as sigv4_sign();
 * *out is a new string the caller frees.
 */
int	 sigv4_canonical_request(const struct sigv4_request *req,
	    const struct sigv4_params *params, enum sigv4_form form,
	    char **out, char **cause);
int	 sigv4_string_to_sign(const struct sigv4_params *params,
	    const char *canonical_request, char **out, char **cause);
/* Hex HMAC of string_to_sign with the key derived from params. */
int	 sigv4_signature(const struct sigv4_params *params,
	    const char *string_to_sign, char **out, char **cause);

#endif
