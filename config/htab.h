/*
 * A string-keyed hash table (open addressing, linear probing). Keys are
 * copied; values are the caller's. Used for cluster names, which can
 * number in the tens of thousands.
 */
#ifndef CK_HTAB_H
#define CK_HTAB_H

#include <stddef.h>

struct htab;

struct htab	*htab_new(void);
void		 htab_free(struct htab *);
void		*htab_get(const struct htab *, const char *);
/* Insert or replace; returns the previous value or NULL. */
void		*htab_put(struct htab *, const char *, void *);
/* Remove; returns the value or NULL. */
void		*htab_del(struct htab *, const char *);
size_t		 htab_count(const struct htab *);
/* Iterate: *pos starts at 0; returns 0 at the end. */
int		 htab_next(const struct htab *, size_t *pos, const char **key,
		    void **value);

#endif
