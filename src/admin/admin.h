/* The admin listener's routes (/metrics, /healthz, and /admin/v1/… as the
 * subsystems add them) and the public /healthz. Registered on the main
 * thread before the server runs; handlers run on the admin worker, and
 * every /admin/v1 route checks the bearer admin token in constant time. */
#pragma once

#include "core/server.h"

/* Registers the core routes on srv's routers. 0 or GH_ETOOBIG. */
int gh_admin_init(struct gh_server *srv);
/* True when req carries "Authorization: Bearer <admin token>"; otherwise
 * answers 401 itself and returns false. */
bool gh_admin_authorized(struct gh_http_req *req);
