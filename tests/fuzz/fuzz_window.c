/*
 * Fuzz the small parsers of config/: daily and weekly windows (with
 * round trips through window_format and the overlap and containment
 * rules), durations and sizes, and the "did you mean" matcher. The
 * input is the text, then optionally a NUL and a big-endian time.
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "schema.h"
#include "window.h"

static const char *const words[] = {
	"snapshot_window", "maintenance_window", "cluster_size", "port", "a",
	"", NULL
};

/* Parse, render, parse again: the same window. */
static void
round_trip(const struct window *w)
{
	struct window	 again;
	const char	*why;
	char		 buf[64];
	int		 r;

	window_format(w, buf, sizeof buf);
	r = w->weekly ? window_parse_weekly(buf, &again, &why) :
	    window_parse_daily(buf, &again, &why);
	if (r != 0 || again.weekly != w->weekly || again.start != w->start ||
	    again.len != w->len)
		abort();
}

/*
 * window_contains at the window's first minute (true) and at the minute
 * after its end (false: windows are shorter than their period), in some
 * week or day picked by the input; and once at an arbitrary time t.
 */
static void
contains(const struct window *w, int64_t t)
{
	int64_t		 period = w->weekly ? WINDOW_WEEK_MIN : WINDOW_DAY_MIN;
	int64_t		 epoch_min, base;

	(void)window_contains(w, t);
	/* 1970-01-01 was a Thursday: minute 4 * 1440 of the week. */
	epoch_min = w->weekly ? 4 * WINDOW_DAY_MIN : 0;
	base = (int64_t)((uint64_t)t % 1000) * period;
	if (!window_contains(w, (base + ((w->start - epoch_min) % period +
	    period) % period) * 60))
		abort();
	if (window_contains(w, (base + ((w->start + w->len - epoch_min) %
	    period + period) % period) * 60))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct window	 d, wk, ref = { false, 5 * 60, 60 };
	const char	*why;
	char		*s;
	uint64_t	 v;
	int64_t		 t = 0;
	size_t		 i;
	int		 okd, okw;

	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	/* After a NUL, up to 8 bytes of a time for window_contains(). */
	for (i = strlen(s) + 1; i < size && i < strlen(s) + 9; i++)
		t = (int64_t)((uint64_t)t << 8 | data[i]);

	okd = window_parse_daily(s, &d, &why) == 0;
	okw = window_parse_weekly(s, &wk, &why) == 0;
	if (okd) {
		if (d.weekly || d.start < 0 || d.start >= WINDOW_DAY_MIN ||
		    d.len < WINDOW_MIN_LEN_MIN || d.len >= WINDOW_DAY_MIN)
			abort();
		round_trip(&d);
		contains(&d, t);
		(void)window_overlaps(&d, &ref);
		if (!window_overlaps(&d, &d))
			abort();
	}
	if (okw) {
		if (!wk.weekly || wk.start < 0 || wk.start >= WINDOW_WEEK_MIN ||
		    wk.len < WINDOW_MIN_LEN_MIN || wk.len > WINDOW_DAY_MIN)
			abort();
		round_trip(&wk);
		contains(&wk, t);
		(void)window_overlaps(&wk, &ref);
		(void)window_overlaps(&ref, &wk);
		if (!window_overlaps(&wk, &wk))
			abort();
	}
	if (okd && okw)
		(void)window_overlaps(&d, &wk);

	(void)parse_duration_ms(s, &v);
	(void)parse_size_bytes(s, &v);
	(void)closest_word(s, words);
	free(s);
	return 0;
}
