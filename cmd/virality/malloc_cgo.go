//go:build cgo && linux

package main

/*
#include <malloc.h>
#include <stdlib.h>

// oneArena holds C's malloc, which Pebble's block cache and memtables use
// when cgo is on, to one arena where the C library is glibc, unless
// MALLOC_ARENA_MAX says otherwise. It runs as the program is loaded: glibc
// fixes its limit of arenas at the first malloc of a second thread, and
// the Go runtime starts threads before any Go code runs.
__attribute__((constructor)) static void oneArena(void) {
#ifdef M_ARENA_MAX
	if (getenv("MALLOC_ARENA_MAX") == NULL) {
		mallopt(M_ARENA_MAX, 1);
	}
#endif
}
*/
import "C"

// glibc gives each thread that contends for malloc an arena of its own,
// up to 8 a core, and memory freed in one arena is not reused by another.
// In B1 under 512 MiB, Pebble's blocks, allocated and freed on the
// threads of reads, flushes and compactions, grew to 67-91 MiB of RSS over
// several arenas for a cache of at most 48 MiB, and stayed at 20-22 MiB
// in one (bench/RESULTS.md); the budget counts the cache, not the arenas.
// The constructor above does it (oneArena).
