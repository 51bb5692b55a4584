/* The admin listener's routes (/metrics, /healthz, /admin/v1/routes; the
 * subsystems add their own /admin/v1/… routes with their own state as ctx)
 * and the public /healthz. Registered on the main thread before the server
 * runs; handlers run on the admin worker. gh_admin_init installs the admin
 * listener's filter: every route under /admin/ needs the bearer admin
 * token, compared in constant time, before its handler runs. */
#pragma once

#include "core/server.h"

/* Registers the core routes on srv's routers. 0 or GH_ETOOBIG. */
int gh_admin_init(struct gh_server *srv);
