/*-------------------------------------------------------------------------
 *
 * channel_kinds.c
 *		The channel kinds: one entry each, with its renderer and its
 *		transport.
 *
 * The delivery worker renders a delivery with the renderer of its
 * channel's kind (herald_format() in format.c) and sends what it built
 * through the kind's transport: an HTTP POST or an SMTP message through
 * http.c, or pg_notify() in the worker.  The transport also fixes what a
 * channel's target is: an http or https URL for HTTP, an smtp or smtps URL
 * for SMTP (herald._check_target() in http.c checks both), a notification
 * channel name for NOTIFY (checked in SQL), nats:// or tls:// servers and
 * a subject for NATS (nats.c, which publishes to JetStream).
 *
 * A new kind is one entry below, plus its name in the SQL that declares
 * channels: the CHECK constraint of herald.channel_defs.kind
 * (install/schema.sql) and herald._validate_channel(), which also holds
 * the rules of each kind's secret, headers and recipients, and
 * herald.create_channel()'s per-kind defaults (install/pg_herald.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_herald.h"

/*
 * The fuzzing harnesses (test/fuzz) take the kinds without their renderers,
 * which would pull in the whole delivery model.
 */
#ifdef HERALD_KINDS_WITHOUT_RENDERERS
#define RENDERER(f) NULL
#else
#define RENDERER(f) f
#endif

static const HeraldChannelKind channel_kinds[] = {
	{
		.name = "webhook",
		.render = RENDERER(herald_format_webhook),
		.transport = HERALD_HTTP
	},
	{
		.name = "slack",
		.render = RENDERER(herald_format_slack),
		.transport = HERALD_HTTP
	},
	{
		.name = "teams",
		.render = RENDERER(herald_format_teams),
		.transport = HERALD_HTTP
	},
	{
		.name = "google_chat",
		.render = RENDERER(herald_format_google_chat),
		.transport = HERALD_HTTP
	},
	{
		.name = "email",
		.render = RENDERER(herald_format_email),
		.transport = HERALD_SMTP
	},
	{
		.name = "notify",
		.render = RENDERER(herald_format_notify),
		.transport = HERALD_NOTIFY
	},
	{
		.name = "nats",
		.render = RENDERER(herald_format_nats),
		.transport = HERALD_NATS
	}
};

/* The entry of a channel kind, or NULL for a name that is none. */
const HeraldChannelKind *
herald_channel_kind(const char *name)
{
	if (name == NULL)
		return NULL;
	for (int i = 0; i < lengthof(channel_kinds); i++)
		if (strcmp(channel_kinds[i].name, name) == 0)
			return &channel_kinds[i];
	return NULL;
}
