/* This module implements the clocks and the thread naming declared in
 * common.h. */
#include "core/common.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

void gh_thread_name(const char *name)
{
    char n[16];
    snprintf(n, sizeof n, "%s", name);
    pthread_setname_np(pthread_self(), n);
}

uint64_t gh_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gh_now_ms(void)
{
    return gh_now_ns() / 1000000u;
}

uint64_t gh_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *gh_time_rfc3339(uint64_t wall_ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(wall_ms % 1000));
    return out;
}

const char *gh_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "no error";
    case GH_EINVAL:
        return "invalid argument";
    case GH_ENOMEM:
        return "out of memory";
    case GH_ETOOBIG:
        return "over its cap";
    case GH_EIO:
        return "system call failed";
    case GH_ENOTFOUND:
        return "not found";
    case GH_EBUSY:
        return "busy";
    case GH_EEXIST:
        return "already exists";
    case GH_EPERM:
        return "not allowed";
    default:
        return "unknown error";
    }
}
