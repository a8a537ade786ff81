/*
 * LD_PRELOAD shim for disk-fault tests: while the file named by
 * $GAMERAFT_FAIL_FSYNC_FLAG exists, fsync() and fdatasync() fail with EIO,
 * as a failing disk makes them. Otherwise they do the real thing.
 * Built by tests/cluster/t70_disk_faults.rs with the system C compiler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int should_fail(void) {
    const char *flag = getenv("GAMERAFT_FAIL_FSYNC_FLAG");
    return flag != NULL && access(flag, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (should_fail()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (should_fail()) { errno = EIO; return -1; }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
