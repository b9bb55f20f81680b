/* UTC daily and weekly windows; see window.h. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "window.h"

static const char *const days[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat"
};

static int
parse_hhmm(const char **pp, int *out)
{
	const char	*p = *pp;
	int		 h, m;

	if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) ||
	    p[2] != ':' || !isdigit((unsigned char)p[3]) ||
	    !isdigit((unsigned char)p[4]))
		return -1;
	h = (p[0] - '0') * 10 + (p[1] - '0');
	m = (p[3] - '0') * 10 + (p[4] - '0');
	if (h > 23 || m > 59)
		return -1;
	*out = h * 60 + m;
	*pp = p + 5;
	return 0;
}

static int
parse_day(const char **pp, int *out)
{
	int	 i;

	for (i = 0; i < 7; i++) {
		if (strncasecmp(*pp, days[i], 3) == 0 && (*pp)[3] == ':') {
			*out = i;
			*pp += 4;
			return 0;
		}
	}
	return -1;
}

int
window_parse_daily(const char *s, struct window *w, const char **why)
{
	int	 a, b;

	if (parse_hhmm(&s, &a) != 0 || *s++ != '-' || parse_hhmm(&s, &b) != 0
	    || *s != '\0') {
		*why = "must look like hh:mm-hh:mm (UTC, 24-hour)";
		return -1;
	}
	w->weekly = false;
	w->start = a;
	w->len = (b - a + WINDOW_DAY_MIN) % WINDOW_DAY_MIN;
	if (w->len < WINDOW_MIN_LEN_MIN) {
		*why = "must be at least 60 minutes long";
		return -1;
	}
	return 0;
}

int
window_parse_weekly(const char *s, struct window *w, const char **why)
{
	int	 d1, d2, a, b;

	if (parse_day(&s, &d1) != 0 || parse_hhmm(&s, &a) != 0 ||
	    *s++ != '-' || parse_day(&s, &d2) != 0 || parse_hhmm(&s, &b) != 0
	    || *s != '\0') {
		*why = "must look like ddd:hh:mm-ddd:hh:mm with ddd one of "
		    "sun, mon, tue, wed, thu, fri, sat (UTC)";
		return -1;
	}
	w->weekly = true;
	w->start = d1 * WINDOW_DAY_MIN + a;
	w->len = (d2 * WINDOW_DAY_MIN + b - w->start + WINDOW_WEEK_MIN) %
	    WINDOW_WEEK_MIN;
	if (w->len < WINDOW_MIN_LEN_MIN) {
		*why = "must be at least 60 minutes long";
		return -1;
	}
	if (w->len > WINDOW_DAY_MIN) {
		*why = "must be at most 24 hours long";
		return -1;
	}
	return 0;
}

void
window_format(const struct window *w, char *buf, size_t len)
{
	int	 end;

	if (!w->weekly) {
		end = (w->start + w->len) % WINDOW_DAY_MIN;
		snprintf(buf, len, "%02d:%02d-%02d:%02d", w->start / 60,
		    w->start % 60, end / 60, end % 60);
		return;
	}
	end = (w->start + w->len) % WINDOW_WEEK_MIN;
	snprintf(buf, len, "%s:%02d:%02d-%s:%02d:%02d",
	    days[w->start / WINDOW_DAY_MIN], (w->start % WINDOW_DAY_MIN) / 60,
	    w->start % 60, days[end / WINDOW_DAY_MIN],
	    (end % WINDOW_DAY_MIN) / 60, end % 60);
}

/* Half-open intervals [a, a+alen) and [b, b+blen) on a circle of size m. */
static bool
arcs_overlap(int a, int alen, int b, int blen, int m)
{
	int	 d;

	d = ((b - a) % m + m) % m;	/* b's start, measured from a */
	if (d < alen)
		return true;
	d = ((a - b) % m + m) % m;
	return d < blen;
}

bool
window_overlaps(const struct window *x, const struct window *y)
{
	int	 day;

	if (x->weekly == y->weekly)
		return arcs_overlap(x->start, x->len, y->start, y->len,
		    x->weekly ? WINDOW_WEEK_MIN : WINDOW_DAY_MIN);
	if (x->weekly) {
		const struct window *t = x;
		x = y;
		y = t;
	}
	/* x daily, y weekly: try the daily window on each day. */
	for (day = 0; day < 7; day++)
		if (arcs_overlap(day * WINDOW_DAY_MIN + x->start, x->len,
		    y->start, y->len, WINDOW_WEEK_MIN))
			return true;
	return false;
}

bool
window_contains(const struct window *w, int64_t t)
{
	struct tm	 tm;
	time_t		 tt = (time_t)t;
	int		 now;

	if (gmtime_r(&tt, &tm) == NULL)
		return false;	/* a year beyond int: tm would be garbage */
	if (w->weekly) {
		now = tm.tm_wday * WINDOW_DAY_MIN + tm.tm_hour * 60 + tm.tm_min;
		return arcs_overlap(w->start, w->len, now, 1, WINDOW_WEEK_MIN)
		    && ((now - w->start + WINDOW_WEEK_MIN) % WINDOW_WEEK_MIN)
		    < w->len;
	}
	now = tm.tm_hour * 60 + tm.tm_min;
	return ((now - w->start + WINDOW_DAY_MIN) % WINDOW_DAY_MIN) < w->len;
}
