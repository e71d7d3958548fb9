/*
 * The channel kinds as herald_channel_kind() (src/channel_kinds.c) names
 * them and their transports, without the renderers: for the harnesses
 * that need the lookup but not the formats (which would pull in the whole
 * delivery model).  test/fuzz/run checks it against channel_kinds.c.
 */
static const HeraldChannelKind fuzz_kinds[] = {
	{.name = "webhook", .transport = HERALD_HTTP},
	{.name = "slack", .transport = HERALD_HTTP},
	{.name = "teams", .transport = HERALD_HTTP},
	{.name = "google_chat", .transport = HERALD_HTTP},
	{.name = "email", .transport = HERALD_SMTP},
	{.name = "notify", .transport = HERALD_NOTIFY}
};

const HeraldChannelKind *
herald_channel_kind(const char *name)
{
	if (name == NULL)
		return NULL;
	for (int i = 0; i < lengthof(fuzz_kinds); i++)
		if (strcmp(fuzz_kinds[i].name, name) == 0)
			return &fuzz_kinds[i];
	return NULL;
}
