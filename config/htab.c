/* String hash table; see htab.h. Deletion uses backward-shift, no tombs. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "util.h"

struct slot {
	char	*key;
	void	*value;
	uint64_t hash;
};

struct htab {
	struct slot	*slots;
	size_t		 cap;	/* power of two */
	size_t		 count;
};

struct htab *
htab_new(void)
{
	struct htab	*h = xcalloc(1, sizeof *h);

	h->cap = 16;
	h->slots = xcalloc(h->cap, sizeof *h->slots);
	return h;
}

void
htab_free(struct htab *h)
{
	size_t	 i;

	if (h == NULL)
		return;
	for (i = 0; i < h->cap; i++)
		free(h->slots[i].key);
	free(h->slots);
	free(h);
}

static size_t
htab_find(const struct htab *h, const char *key, uint64_t hash)
{
	size_t	 i = hash & (h->cap - 1);

	while (h->slots[i].key != NULL) {
		if (h->slots[i].hash == hash &&
		    strcmp(h->slots[i].key, key) == 0)
			return i;
		i = (i + 1) & (h->cap - 1);
	}
	return i;
}

static void
htab_grow(struct htab *h)
{
	struct slot	*old = h->slots;
	size_t		 oldcap = h->cap, i, j;

	h->cap *= 2;
	h->slots = xcalloc(h->cap, sizeof *h->slots);
	for (i = 0; i < oldcap; i++) {
		if (old[i].key == NULL)
			continue;
		j = old[i].hash & (h->cap - 1);
		while (h->slots[j].key != NULL)
			j = (j + 1) & (h->cap - 1);
		h->slots[j] = old[i];
	}
	free(old);
}

void *
htab_get(const struct htab *h, const char *key)
{
	size_t	 i = htab_find(h, key, hash_fnv1a64(key, strlen(key), 0));

	return h->slots[i].key ? h->slots[i].value : NULL;
}

void *
htab_put(struct htab *h, const char *key, void *value)
{
	uint64_t	 hash = hash_fnv1a64(key, strlen(key), 0);
	size_t		 i;
	void		*old;

	if ((h->count + 1) * 4 > h->cap * 3)
		htab_grow(h);
	i = htab_find(h, key, hash);
	if (h->slots[i].key != NULL) {
		old = h->slots[i].value;
		h->slots[i].value = value;
		return old;
	}
	h->slots[i].key = xstrdup(key);
	h->slots[i].value = value;
	h->slots[i].hash = hash;
	h->count++;
	return NULL;
}

void *
htab_del(struct htab *h, const char *key)
{
	size_t	 i, j, k;
	void	*value;

	i = htab_find(h, key, hash_fnv1a64(key, strlen(key), 0));
	if (h->slots[i].key == NULL)
		return NULL;
	value = h->slots[i].value;
	free(h->slots[i].key);
	h->slots[i].key = NULL;
	h->count--;
	/* Shift back the run after i so lookups never stop early. */
	j = i;
	for (;;) {
		j = (j + 1) & (h->cap - 1);
		if (h->slots[j].key == NULL)
			break;
		k = h->slots[j].hash & (h->cap - 1);
		if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
			h->slots[i] = h->slots[j];
			h->slots[j].key = NULL;
			i = j;
		}
	}
	return value;
}

size_t
htab_count(const struct htab *h)
{
	return h->count;
}

int
htab_next(const struct htab *h, size_t *pos, const char **key, void **value)
{
	while (*pos < h->cap) {
		size_t i = (*pos)++;
		if (h->slots[i].key != NULL) {
			*key = h->slots[i].key;
			*value = h->slots[i].value;
			return 1;
		}
	}
	return 0;
}
