/*
 * Shared bits of the fuzz harnesses: the libFuzzer entry point's
 * prototype (the harnesses are built both against libFuzzer and against
 * standalone.c, which replays files) and an anonymous in-memory file for
 * the parsers that read a path.
 */
#ifndef CK_FUZZ_H
#define CK_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * A memfd holding data; *path becomes "/proc/self/fd/N", which open(2)
 * reads as a regular file. Nothing touches the disk and a crash leaves
 * nothing behind. Returns the fd (close it) or aborts.
 */
int	 fuzz_memfile(const void *data, size_t len, char *path, size_t pathlen);

#endif
