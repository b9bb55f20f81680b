/* The in-memory file of fuzz.h. */
#include "config.h"

#include <sys/mman.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"

int
fuzz_memfile(const void *data, size_t len, char *path, size_t pathlen)
{
	const char	*p = data;
	ssize_t		 n;
	int		 fd;

	if ((fd = memfd_create("fuzz", MFD_CLOEXEC)) == -1) {
		perror("memfd_create");
		abort();
	}
	while (len > 0) {
		if ((n = write(fd, p, len)) <= 0) {
			perror("write");
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}
