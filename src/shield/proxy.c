/* This module implements the X-Forwarded-For walk of proxy.h. */
#include "shield/proxy.h"

#include "shield/ipset.h"

#include <string.h>
#include <strings.h>

/* Walks one field value from the right, continuing the walk *out and
 * *from_header hold. Returns true when the walk goes on into the field
 * line before this one (every element here was a trusted hop). */
static bool xff_walk(const char *value, size_t len, const struct gh_ipset *trusted,
                     struct gh_addr *out, bool *from_header)
{
    size_t end = len;
    for (;;) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        struct gh_addr a;
        if (gh_addr_parse(value + start, end - start, &a))
            return false; /* keep the trusted hop on its right */
        *out = a;
        *from_header = true;
        if (!gh_ipset_contains(trusted, &a))
            return false;
        if (start == 0)
            return true;
        end = start - 1;
    }
}

bool gh_proxy_xff(const char *value, size_t len, const struct gh_addr *peer,
                  const struct gh_ipset *trusted, struct gh_addr *out)
{
    *out = *peer;
    if (!value || !trusted || !gh_ipset_contains(trusted, peer))
        return false;
    bool from_header = false;
    xff_walk(value, len, trusted, out, &from_header);
    return from_header;
}

bool gh_proxy_xff_req(const struct gh_http_req *req, const struct gh_addr *peer,
                      const struct gh_ipset *trusted, struct gh_addr *out)
{
    *out = *peer;
    if (!trusted || !gh_ipset_contains(trusted, peer))
        return false;
    bool from_header = false;
    /* the field lines joined in order (RFC 9110 5.3) and walked from the
     * right: the last line first, as the nearest proxy appended it */
    for (unsigned i = req->nheaders; i-- > 0;) {
        const struct gh_http_header *h = &req->headers[i];
        if (h->name_len != 15 || strncasecmp(h->name, "x-forwarded-for", 15))
            continue;
        if (!xff_walk(h->value, h->value_len, trusted, out, &from_header))
            break;
    }
    return from_header;
}
