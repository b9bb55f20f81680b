/*
 * Fuzz the daemon configuration loader. dconf_load() reads a path, so the
 * input goes into an in-memory file (fuzz_memfile) named by /proc/self/fd.
 */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "dconf.h"
#include "fuzz.h"
#include "spec.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dconf	*c;
	struct diags	 d;
	char		 path[64], *s;
	size_t		 i;
	int		 fd;

	fd = fuzz_memfile(data, size, path, sizeof path);
	diags_init(&d);
	/* A memfd is no file the ownership rules apply to. */
	c = dconf_load_flags(path, 0, DCONF_NO_FILE_CHECK, &d);
	/* NULL exactly when there are errors. */
	if ((c == NULL) != (d.n > 0))
		abort();
	for (i = 0; i < d.n; i++) {
		/* The file is always readable: every error has a place. */
		if ((d.v[i].line < 1 || d.v[i].col < 1) &&
		    size <= SPEC_MAX_FILE_BYTES)
			abort();
		s = diag_format(&d.v[i]);
		free(s);
	}
	dconf_free(c);
	diags_free(&d);
	close(fd);
	return 0;
}
