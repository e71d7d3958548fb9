/*
 * nats_tool: the JetStream side of pg_herald's NATS tests and benchmark,
 * with the nats.c client (libnats-dev).
 *
 *   nats_tool stream SERVERS NAME SUBJECT REPLICAS
 *       create a stream capturing SUBJECT (a wildcard is fine), retrying
 *       while the cluster elects its JetStream leader (up to 30 s)
 *   nats_tool count SERVERS NAME
 *       print the number of messages the stream holds
 *   nats_tool consume SERVERS NAME SUBJECT DURABLE EXPECTED SECONDS
 *       read the stream with a durable pull consumer, as a service would:
 *       fetch in batches, acknowledge each message, until EXPECTED distinct
 *       Nats-Msg-Id were read or SECONDS passed without a new message; print
 *       "received=N distinct=N duplicates=N", then the subject, the
 *       webhook-id header and the body of the first message
 *
 * SERVERS is a comma-separated list of nats:// URLs.  Exits 1 on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

static void
die(const char *what, natsStatus s, jsErrCode jerr)
{
	fprintf(stderr, "nats_tool: %s: %s (JetStream error %d; %s)\n", what,
			natsStatus_GetText(s), (int) jerr, nats_GetLastError(NULL));
	exit(1);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
compare(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx	   *js = NULL;
	natsStatus	s;
	jsErrCode	jerr = 0;

	if (argc < 4)
	{
		fprintf(stderr, "usage: see the comment at the top of nats_tool.c\n");
		return 2;
	}
	s = natsConnection_ConnectTo(&nc, argv[2]);
	if (s != NATS_OK)
		die("connect", s, 0);
	s = natsConnection_JetStream(&js, nc, NULL);
	if (s != NATS_OK)
		die("JetStream context", s, 0);

	if (strcmp(argv[1], "stream") == 0 && argc == 6)
	{
		jsStreamConfig cfg;
		const char *subjects[1] = {argv[4]};
		jsStreamInfo *si = NULL;
		double		until = now_s() + 30;

		jsStreamConfig_Init(&cfg);
		cfg.Name = argv[3];
		cfg.Subjects = subjects;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		cfg.Replicas = atoi(argv[5]);
		cfg.Duplicates = (int64_t) 120 * 1000000000;	/* 2 minutes */
		for (;;)
		{
			jerr = 0;
			s = js_AddStream(&si, js, &cfg, NULL, &jerr);
			if (s == NATS_OK || now_s() > until)
				break;
			usleep(200000);
		}
		if (s != NATS_OK)
			die("add stream", s, jerr);
		printf("stream %s replicas=%lld\n", argv[3], (long long) si->Config->Replicas);
		jsStreamInfo_Destroy(si);
	}
	else if (strcmp(argv[1], "count") == 0 && argc == 4)
	{
		jsStreamInfo *si = NULL;

		s = js_GetStreamInfo(&si, js, argv[3], NULL, &jerr);
		if (s != NATS_OK)
			die("stream info", s, jerr);
		printf("%llu\n", (unsigned long long) si->State.Msgs);
		jsStreamInfo_Destroy(si);
	}
	else if (strcmp(argv[1], "consume") == 0 && argc == 8)
	{
		natsSubscription *sub = NULL;
		jsSubOptions so;
		int			expected = atoi(argv[6]);
		double		quiet = atof(argv[7]);
		double		last = now_s();
		char	  **ids = malloc(sizeof(char *) * (expected + 1000));
		int			nids = 0;
		int			maxids = expected + 1000;
		int			received = 0;
		int			distinct = 0;
		char	   *first = NULL;

		jsSubOptions_Init(&so);
		so.Stream = argv[3];
		s = js_PullSubscribe(&sub, js, argv[4], argv[5], NULL, &so, &jerr);
		if (s != NATS_OK)
			die("pull subscribe", s, jerr);
		while (now_s() - last < quiet)
		{
			natsMsgList list = {0};

			s = natsSubscription_Fetch(&list, sub, 500, 1000, &jerr);
			if (s == NATS_TIMEOUT)
				continue;
			if (s != NATS_OK)
				die("fetch", s, jerr);
			for (int i = 0; i < list.Count; i++)
			{
				natsMsg    *m = list.Msgs[i];
				const char *id = NULL;
				const char *webhook_id = NULL;

				natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
				natsMsgHeader_Get(m, "webhook-id", &webhook_id);
				if (first == NULL)
				{
					size_t		len = strlen(natsMsg_GetSubject(m)) + natsMsg_GetDataLength(m) + 200;

					first = malloc(len);
					snprintf(first, len, "subject=%s\nwebhook-id=%s\nbody=%.*s\n",
							 natsMsg_GetSubject(m), webhook_id ? webhook_id : "",
							 natsMsg_GetDataLength(m), natsMsg_GetData(m));
				}
				if (nids == maxids)
				{
					maxids *= 2;
					ids = realloc(ids, sizeof(char *) * maxids);
				}
				ids[nids++] = strdup(id ? id : "");
				received++;
				s = natsMsg_Ack(m, NULL);
				if (s != NATS_OK)
					die("ack", s, 0);
			}
			if (list.Count > 0)
				last = now_s();
			natsMsgList_Destroy(&list);
			qsort(ids, nids, sizeof(char *), compare);
			distinct = 0;
			for (int i = 0; i < nids; i++)
				if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
					distinct++;
			if (distinct >= expected)
				break;
		}
		printf("received=%d distinct=%d duplicates=%d\n", received, distinct,
			   received - distinct);
		if (first)
			fputs(first, stdout);
		natsSubscription_Destroy(sub);
	}
	else
	{
		fprintf(stderr, "usage: see the comment at the top of nats_tool.c\n");
		return 2;
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return 0;
}
