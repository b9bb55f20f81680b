/*
 * Fuzz the shared credentials and config files (the AWS INI dialect).
 * Input: the profile name on the first line (empty: AWS_PROFILE, unset
 * here, so "default"), then the credentials file, then a line "%%%%" and
 * the config file. Both go into in-memory files.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "creds.h"
#include "fuzz.h"

#define SPLIT	"\n%%%%\n"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*p = (const char *)data, *nl, *split;
	struct aws_creds	 c;
	char			*profile, *cause = NULL;
	char			 kpath[64], cpath[64];
	size_t			 rest;
	int			 kfd, cfd, r;

	unsetenv("AWS_PROFILE");
	if ((nl = memchr(p, '\n', size)) == NULL)
		nl = p + size;
	profile = strndup(p, (size_t)(nl - p));
	if (profile == NULL)
		abort();
	p = nl < p + size ? nl + 1 : nl;
	rest = size - (size_t)(p - (const char *)data);
	split = memmem(p, rest, SPLIT, strlen(SPLIT));
	kfd = fuzz_memfile(p, split ? (size_t)(split - p) : rest, kpath,
	    sizeof kpath);
	if (split != NULL) {
		split += strlen(SPLIT);
		cfd = fuzz_memfile(split, rest - (size_t)(split - p), cpath,
		    sizeof cpath);
	} else
		cfd = fuzz_memfile("", 0, cpath, sizeof cpath);

	r = creds_from_profile(profile, kpath, cpath, &c, &cause);
	if (r == 0 && (c.access_key_id == NULL ||
	    c.secret_access_key == NULL || c.source == NULL))
		abort();
	if (r == -EINVAL && cause == NULL)
		abort();
	if (r != 0 && r != -EINVAL && r != -ENOENT)
		abort();
	creds_free(&c);
	free(cause);
	free(profile);
	close(kfd);
	close(cfd);
	return 0;
}
