/*
 * fuzz_file.h — what every loader harness shares: the fuzzer's bytes as a
 * file the loader can open by path, and a small loader budget.
 *
 * The bytes go to one anonymous in-memory file (memfd_create), opened by the
 * loaders as /proc/self/fd/N: no disk traffic, and the file has a real size
 * for the loaders' size checks. Built only by scripts/fuzz (clang,
 * -fsanitize=fuzzer,address,undefined).
 */
#ifndef MR_FUZZ_FILE_H
#define MR_FUZZ_FILE_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "moreau.h"
#include "internal.h" /* mr_tensor fields, to check what a loader returns */

/* 64 MiB: every input the budget admits decodes well inside libFuzzer's
 * default 2 GB memory limit, so a report is a bug, not a big image. */
#define FUZZ_BUDGET (64ll << 20)

/* A path whose file holds exactly data[0..size). */
static const char *fuzz_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("moreau-fuzz", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        mr_set_loader_budget(FUZZ_BUDGET);
    }
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
        perror("ftruncate");
        abort();
    }
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) {
            perror("pwrite");
            abort();
        }
        done += (size_t)n;
    }
    return path;
}

#endif
