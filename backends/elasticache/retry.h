/*
 * How the ElastiCache backend treats failures and paces itself: which AWS
 * error codes are throttling (retry with backoff), transient (retry),
 * terminal (stop until the spec changes) or a state to wait out (requeue);
 * exponential backoff with full jitter; and a token bucket that keeps the
 * daemon's own call rate polite. Pure: the caller passes clocks and random
 * numbers, so everything here is testable.
 */
#ifndef CK_RETRY_H
#define CK_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#define RETRY_BASE_MS	1000
#define RETRY_CAP_MS	20000

enum ec_error_class {
	EC_ERR_THROTTLE,	/* back off, then retry */
	EC_ERR_TRANSIENT,	/* 5xx, connection trouble: retry */
	EC_ERR_WAIT,		/* the group is busy: requeue and look again */
	EC_ERR_TERMINAL,	/* the request is wrong: stop until it changes */
	EC_ERR_NOT_FOUND,	/* the group does not exist */
	EC_ERR_EXISTS,		/* already exists: adopt it */
	EC_ERR_NO_CHANGE,	/* "No modifications were requested": success */
	EC_ERR_UNKNOWN,		/* anything else: retry with backoff */
};

/*
 * Classify an answer: http_status 0 means no HTTP answer at all (a
 * connection error or timeout); code and message may be NULL.
 */
enum ec_error_class ec_error_classify(long http_status, const char *code,
		    const char *message);
const char	*ec_error_class_name(enum ec_error_class);

/*
 * Full jitter: a uniform delay in [0, min(cap, base * 2^attempt)), from a
 * random 32-bit value r supplied by the caller. attempt counts from 0.
 */
uint64_t	 retry_delay_ms(unsigned int attempt, uint32_t r);

struct token_bucket {
	double		 tokens;
	double		 capacity;
	double		 rate;		/* tokens per second */
	uint64_t	 last_ms;	/* monotonic */
};

void		 bucket_init(struct token_bucket *, double rate,
		    double capacity, uint64_t now_ms);
/* Take a token: 0, or how many ms until one is there. */
uint64_t	 bucket_take(struct token_bucket *, uint64_t now_ms);

#endif
