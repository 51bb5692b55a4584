/* What the built-in `echo` model answers, decided from a validated chat
 * request: the words of the last user message ("Echo: …"), a JSON object
 * when response_format asks for json_object, or a call of one of the
 * request's tools when the last message asks for one. Pure functions on
 * caller memory (any thread); the timing and framing of the answer are
 * gateway.c's. */
#pragma once

#include "core/buf.h"
#include "core/common.h"

#include <jansson.h>

enum gh_echo_kind {
    GH_ECHO_WORDS, /* "Echo: " + the words, one token per word */
    GH_ECHO_JSON,  /* {"echo":"<the last user message>"}, sent in slices */
    GH_ECHO_TOOL,  /* a tool call: text holds its arguments (a JSON object) */
};

/* Tools whose parameters are read for the arguments; more are ignored. */
#define GH_ECHO_TOOLS_MAX  128
#define GH_ECHO_PARAMS_MAX 32
/* A string argument holds at most this many bytes of the user's text. */
#define GH_ECHO_ARG_MAX 1024

struct gh_echo_plan {
    enum gh_echo_kind kind;
    char tool[65]; /* GH_ECHO_TOOL: the function's name */
};

/* Decides the answer to root (a request gh_chat_parse accepted) whose last
 * user message is last_user (len bytes) and appends its text to text:
 *
 * - a tool call when root has tools (and tool_choice is not "none") and
 *   its last message is the user's and either names one of the tools'
 *   functions, or tool_choice requires a call ("required": the named one
 *   or the first; {"type":"function","function":{"name":…}}: that one).
 *   The arguments give each required parameter (every parameter when the
 *   schema lists none as required) a value of its type: strings the
 *   user's text (its first GH_ECHO_ARG_MAX bytes), numbers 0, booleans
 *   false, arrays [], objects {}, an enum its first value;
 * - else with response_format {"type":"json_object"} the object
 *   {"echo":"<last user text>"};
 * - else "Echo: " followed by the text ("(nothing)" when empty).
 *
 * Returns 0, or GH_ENOMEM / GH_ETOOBIG from text. */
int gh_echo_plan(json_t *root, const char *last_user, size_t len, struct gh_echo_plan *plan,
                 struct gh_buf *text);
