/*
 * Encryption at rest of snapshot files (see backup.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backup.h"

int
backup_decrypt_all(json_t *manifest, char **files, const char *workdir,
    const char *key_file, int fd)
{
	const char	*scheme = json_string_value(json_object_get(
	    json_object_get(manifest, "encryption"), "scheme"));

	(void)files;
	(void)workdir;
	(void)key_file;
	if (scheme == NULL || strcmp(scheme, "none") == 0)
		return 0;
	dprintf(fd, "snapshot encryption scheme %s is not supported", scheme);
	return -1;
}
