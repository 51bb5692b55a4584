#include "http/jsonbody.h"

json_t *gh_http_body_object(struct gh_http_req *req)
{
    if (!req->body.len) {
        gh_http_respond_error(req, 400, "invalid_json", "body: a JSON object is required");
        return NULL;
    }
    json_error_t e;
    json_t *o = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &e);
    if (!o) {
        /* jansson's text names the problem and the key, never our state */
        gh_http_respond_error(req, 400, "invalid_json", "body: not valid JSON (line %d: %.80s)",
                              e.line, e.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        gh_http_respond_error(req, 400, "invalid_json", "body: expected a JSON object");
        return NULL;
    }
    return o;
}
