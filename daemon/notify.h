/*
 * systemd readiness and watchdog protocol (sd_notify). Every call is a
 * no-op when NOTIFY_SOCKET is unset, so the daemon runs the same with and
 * without systemd. STATUS= is sent only when its text changes.
 */
#ifndef CK_NOTIFY_H
#define CK_NOTIFY_H

#include <stdint.h>

void		 notify_ready(void);
void		 notify_reloading(void);
void		 notify_stopping(void);
void		 notify_status(const char *);
void		 notify_watchdog(void);
/* Ask for more time to start (or stop) than the unit's timeout. */
void		 notify_extend_timeout(uint64_t usec);
void		 notify_free(void);
/* Watchdog period requested by systemd, in microseconds; 0: none. */
uint64_t	 notify_watchdog_usec(void);

#endif
