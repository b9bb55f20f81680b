/* The elasticache backend's table and its counters (see elasticache.c). */
#ifndef CK_ELASTICACHE_H
#define CK_ELASTICACHE_H

#include "backend.h"
#include "ecapi.h"

extern struct backend backend_elasticache;

/* The daemon-wide API call counters; NULL before the first attach. */
const struct ecapi_stats *elasticache_stats(void);

#endif
