/* The files of web/, embedded into the binary at build time by
 * scripts/embed-web.sh. Read-only; any thread. */
#pragma once

#include <stddef.h>

struct gh_asset {
    const char *path; /* "/chat.js" */
    const unsigned char *data;
    size_t len;
};

/* Terminated by an entry with path NULL. */
extern const struct gh_asset gh_assets[];
