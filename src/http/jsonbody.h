/* One reader for every handler's JSON request body, with one strictness:
 * an object, no duplicate keys (a repeated key is how a filter and the code
 * behind it are made to read different values), and a 400 naming what is
 * wrong. Loop thread; the caller owns the result (json_decref). */
#ifndef GH_HTTP_JSONBODY_H
#define GH_HTTP_JSONBODY_H

#include <jansson.h>

#include "http/http.h"

/* The body as a JSON object, or NULL after answering 400 invalid_json
 * ("body: a JSON object is required", "body: not valid JSON (line N: ...)",
 * "body: expected a JSON object"). */
json_t *gh_http_body_object(struct gh_http_req *req);

#endif
