/*
 * Fuzz the cluster spec parser: YAML (libyaml events, anchors, aliases),
 * the typed readers and every cross-field rule, then what callers do with
 * the result (diagnostics formatted, valid specs turned into JSON).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "spec.h"

static const char *const backends[] = { "local", "elasticache", "test",
	NULL };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spec_opts	 opts = { "local", backends };
	struct spec_list	 l = { 0 };
	struct diags		 d;
	size_t			 i;
	json_t			*j;
	char			*s;
	int			 r;

	diags_init(&d);
	r = spec_parse_buffer("fuzz.yaml", (const char *)data, size, &opts,
	    &l, &d);
	for (i = 0; i < d.n; i++) {
		/* Every error has a place, but a file over the size limit. */
		if ((d.v[i].line < 1 || d.v[i].col < 1) &&
		    size <= SPEC_MAX_FILE_BYTES)
			abort();
		s = diag_format(&d.v[i]);
		free(s);
	}
	for (i = 0; i < l.n; i++) {
		j = spec_to_json(l.v[i]);
		s = json_dumps(j, JSON_SORT_KEYS);
		free(s);
		json_decref(j);
	}
	/* Valid exactly when there is no diagnostic; invalid: no spec. */
	if ((r == 0) != (d.n == 0) || (r != 0 && l.n != 0))
		abort();
	spec_list_free(&l);
	diags_free(&d);
	return 0;
}
