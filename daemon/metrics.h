/*
 * Prometheus metrics: the text exposition format (version 0.0.4) at
 * /metrics on metrics_listen (HOST:PORT, TCP) and on the control socket.
 * Everything is derived from what the reconcilers report (their status)
 * and the daemon's own counters at the time of the scrape.
 */
#ifndef CK_METRICS_H
#define CK_METRICS_H

struct daemon;
struct strbuf;
struct metrics;

void		 metrics_render(struct daemon *, struct strbuf *);
/* Listen on d->conf->metrics_listen; NULL when off or on failure. */
struct metrics	*metrics_start(struct daemon *);
void		 metrics_free(struct metrics *);

#endif
