/*
 * Time windows in UTC: daily "hh:mm-hh:mm" (snapshot windows) and weekly
 * "ddd:hh:mm-ddd:hh:mm" (maintenance windows), as ElastiCache writes them.
 * Times are minutes; daily windows may cross midnight, weekly ones the end
 * of the week.
 */
#ifndef CK_WINDOW_H
#define CK_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#define WINDOW_DAY_MIN		1440
#define WINDOW_WEEK_MIN		(7 * 1440)
#define WINDOW_MIN_LEN_MIN	60

struct window {
	bool	 weekly;
	int	 start;		/* minutes from 00:00 (daily) or sun 00:00 */
	int	 len;		/* minutes */
};

/* Parse; on error return -1 and a static reason in *why. */
int	 window_parse_daily(const char *, struct window *, const char **why);
int	 window_parse_weekly(const char *, struct window *, const char **why);
/* Render back in the input format. */
void	 window_format(const struct window *, char *, size_t);
/* Whether any occurrence of a and b overlap within a week. */
bool	 window_overlaps(const struct window *, const struct window *);
/* Whether the UTC time t (seconds) lies inside w. */
bool	 window_contains(const struct window *, int64_t t);

#endif
