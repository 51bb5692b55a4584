/* This module implements the decision of what the echo model answers
 * (echo.h): words, a JSON object, or a tool call with arguments built from
 * the tool's parameter schema. */
#include "gateway/echo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The name of tool t ({"type":"function","function":{"name":…}}), or NULL. */
static const char *tool_name(json_t *t)
{
    const char *name = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
    return name && *name && strlen(name) < sizeof((struct gh_echo_plan *)0)->tool ? name : NULL;
}

/* The tool the request asks for, or NULL. */
static json_t *chosen_tool(json_t *root, const char *text, size_t len)
{
    json_t *tools = json_object_get(root, "tools");
    json_t *messages = json_object_get(root, "messages");
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    json_t *choice = json_object_get(root, "tool_choice");
    const char *mode = json_string_value(choice);
    if (!json_array_size(tools) || !role || strcmp(role, "user") || (mode && !strcmp(mode, "none")))
        return NULL;
    const char *forced = json_string_value(
        json_object_get(json_object_get(choice, "function"), "name")); /* a named function */
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (i >= GH_ECHO_TOOLS_MAX)
            break;
        const char *name = tool_name(t);
        if (!name)
            continue;
        if (forced ? !strcmp(name, forced) : memmem(text, len, name, strlen(name)) != NULL)
            return t;
    }
    if (!forced && mode && !strcmp(mode, "required")) {
        json_array_foreach(tools, i, t) if (tool_name(t)) return t; /* the first with a name */
    }
    return NULL;
}

/* A value of the JSON schema s's type for the arguments. Strings are the
 * user's text cut to GH_ECHO_ARG_MAX bytes (on a character boundary), so
 * 32 parameters cannot multiply a large message. */
static json_t *value_for(json_t *s, const char *text, size_t len)
{
    if (len > GH_ECHO_ARG_MAX) {
        len = GH_ECHO_ARG_MAX;
        while (len && ((unsigned char)text[len] & 0xc0) == 0x80)
            len--;
    }
    json_t *en = json_object_get(s, "enum");
    if (json_array_size(en))
        return json_copy(json_array_get(en, 0));
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!type || !strcmp(type, "string"))
        return json_stringn_nocheck(text, len);
    if (!strcmp(type, "integer") || !strcmp(type, "number"))
        return json_integer(0);
    if (!strcmp(type, "boolean"))
        return json_false();
    if (!strcmp(type, "array"))
        return json_array();
    if (!strcmp(type, "object"))
        return json_object();
    return json_null();
}

/* The arguments of a call of tool t: {"<param>": value, …}. */
static json_t *arguments(json_t *t, const char *text, size_t len)
{
    json_t *params = json_object_get(json_object_get(t, "function"), "parameters");
    json_t *props = json_object_get(params, "properties");
    json_t *required = json_object_get(params, "required");
    json_t *args = json_object();
    if (!args || !json_is_object(props))
        return args;
    const char *key;
    json_t *schema;
    unsigned n = 0;
    json_object_foreach(props, key, schema)
    {
        if (n >= GH_ECHO_PARAMS_MAX)
            break;
        bool wanted = !json_array_size(required);
        size_t i;
        json_t *r;
        json_array_foreach(required, i, r) wanted =
            wanted || (json_is_string(r) && !strcmp(json_string_value(r), key));
        if (!wanted)
            continue;
        json_object_set_new(args, key, value_for(schema, text, len));
        n++;
    }
    return args;
}

/* Appends the compact text of o (consumed) to b. */
static int append_json(struct gh_buf *b, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = s ? gh_buf_append_str(b, s) : GH_ENOMEM;
    free(s);
    return rc;
}

int gh_echo_plan(json_t *root, const char *last_user, size_t len, struct gh_echo_plan *plan,
                 struct gh_buf *text)
{
    memset(plan, 0, sizeof *plan);
    json_t *tool = chosen_tool(root, last_user, len);
    if (tool) {
        plan->kind = GH_ECHO_TOOL;
        snprintf(plan->tool, sizeof plan->tool, "%s", tool_name(tool));
        return append_json(text, arguments(tool, last_user, len));
    }
    const char *format =
        json_string_value(json_object_get(json_object_get(root, "response_format"), "type"));
    if (format && !strcmp(format, "json_object")) {
        plan->kind = GH_ECHO_JSON;
        return append_json(text, json_pack("{s:s%}", "echo", last_user, len));
    }
    plan->kind = GH_ECHO_WORDS;
    int rc = gh_buf_append_str(text, "Echo: ");
    if (!len)
        return rc ? rc : gh_buf_append_str(text, "(nothing)");
    return rc ? rc : gh_buf_append(text, last_user, len);
}
