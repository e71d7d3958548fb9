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
 *   nats_tool creds DIR
 *       make the keys and JWTs of a server in operator mode (no nsc in
 *       Debian): an operator, its system account SYS and an account APP with
 *       JetStream, and users of APP, each as a .creds file in DIR:
 *       good.creds; revoked.creds (APP's JWT revokes it); expired.creds (its
 *       JWT expired an hour ago); wrong-seed.creds (good's JWT with
 *       revoked's seed).  Also operator.jwt, and server.conf-resolver, the
 *       resolver_preload block of nats-server's configuration (prints
 *       "operator=O... app=A... good=U...")
 *
 * SERVERS is a comma-separated list of nats:// URLs.  When NATS_TOOL_CREDS
 * names a .creds file, the tool connects with it.  Exits 1 on error.
 *
 * Nkeys: base32 (RFC 4648, no padding) of a prefix (one byte for a public
 * key, two for a seed), the 32 bytes of an ed25519 key, and the CRC-16
 * (XMODEM) of those, little endian.  JWTs: base64url (no padding) of the
 * header, then of the claims, then of the issuer's ed25519 signature of
 * "header.claims".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

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

/* --- operator mode: nkeys and JWTs -------------------------------------------- */

#define PREFIX_SEED (18 << 3)
#define PREFIX_OPERATOR (14 << 3)
#define PREFIX_ACCOUNT 0
#define PREFIX_USER (20 << 3)

typedef struct Key
{
	unsigned char seed[32];
	unsigned char pub[32];
	char		public_text[64];
	char		seed_text[64];
} Key;

static void
fail(const char *what)
{
	fprintf(stderr, "nats_tool: %s\n", what);
	exit(1);
}

static unsigned short
crc16(const unsigned char *p, size_t len)
{
	unsigned short crc = 0;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= (unsigned short) (p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (unsigned short) ((crc << 1) ^ 0x1021) : (unsigned short) (crc << 1);
	}
	return crc;
}

static void
base32(const unsigned char *p, size_t len, char *out)
{
	const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	unsigned int bits = 0;
	int			nbits = 0;

	for (size_t i = 0; i < len; i++)
	{
		bits = (bits << 8) | p[i];
		nbits += 8;
		while (nbits >= 5)
		{
			nbits -= 5;
			*out++ = alphabet[(bits >> nbits) & 31];
		}
	}
	if (nbits > 0)
		*out++ = alphabet[(bits << (5 - nbits)) & 31];
	*out = '\0';
}

static char *
base64url(const unsigned char *p, size_t len)
{
	const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char	   *out = malloc(len * 4 / 3 + 4);
	char	   *o = out;
	unsigned int bits = 0;
	int			nbits = 0;

	for (size_t i = 0; i < len; i++)
	{
		bits = (bits << 8) | p[i];
		nbits += 8;
		while (nbits >= 6)
		{
			nbits -= 6;
			*o++ = alphabet[(bits >> nbits) & 63];
		}
	}
	if (nbits > 0)
		*o++ = alphabet[(bits << (6 - nbits)) & 63];
	*o = '\0';
	return out;
}

/* A new ed25519 key and its nkey texts, of the type PREFIX. */
static void
make_key(Key *k, int prefix)
{
	EVP_PKEY   *pkey;
	size_t		publen = 32;
	unsigned char raw[36];
	unsigned short crc;

	if (RAND_bytes(k->seed, 32) != 1)
		fail("RAND_bytes");
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->seed, 32);
	if (pkey == NULL || EVP_PKEY_get_raw_public_key(pkey, k->pub, &publen) != 1)
		fail("ed25519 key");
	EVP_PKEY_free(pkey);

	raw[0] = (unsigned char) prefix;
	memcpy(raw + 1, k->pub, 32);
	crc = crc16(raw, 33);
	raw[33] = crc & 0xff;
	raw[34] = crc >> 8;
	base32(raw, 35, k->public_text);

	raw[0] = (unsigned char) (PREFIX_SEED | (prefix >> 5));
	raw[1] = (unsigned char) ((prefix & 31) << 3);
	memcpy(raw + 2, k->seed, 32);
	crc = crc16(raw, 34);
	raw[34] = crc & 0xff;
	raw[35] = crc >> 8;
	base32(raw, 36, k->seed_text);
}

/* The JWT of CLAIMS (a JSON object's members after jti, iat, iss), signed by ISSUER. */
static char *
make_jwt(const Key *issuer, long iat, const char *claims)
{
	const char *header = "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}";
	unsigned char jti_raw[32];
	char		jti[64];
	char	   *json = malloc(strlen(claims) + 300);
	char	   *h;
	char	   *c;
	char	   *signed_part;
	unsigned char sig[64];
	size_t		siglen = sizeof(sig);
	char	   *s;
	char	   *jwt;
	EVP_PKEY   *pkey;
	EVP_MD_CTX *ctx;

	if (RAND_bytes(jti_raw, sizeof(jti_raw)) != 1)
		fail("RAND_bytes");
	base32(jti_raw, sizeof(jti_raw), jti);
	sprintf(json, "{\"jti\":\"%s\",\"iat\":%ld,\"iss\":\"%s\",%s}", jti, iat,
			issuer->public_text, claims);
	h = base64url((const unsigned char *) header, strlen(header));
	c = base64url((const unsigned char *) json, strlen(json));
	signed_part = malloc(strlen(h) + strlen(c) + 2);
	sprintf(signed_part, "%s.%s", h, c);
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, issuer->seed, 32);
	ctx = EVP_MD_CTX_new();
	if (pkey == NULL || ctx == NULL ||
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) != 1 ||
		EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) signed_part,
					   strlen(signed_part)) != 1)
		fail("ed25519 signature");
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	s = base64url(sig, siglen);
	jwt = malloc(strlen(signed_part) + strlen(s) + 2);
	sprintf(jwt, "%s.%s", signed_part, s);
	free(json);
	free(h);
	free(c);
	free(s);
	free(signed_part);
	return jwt;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		fail("could not write a file");
}

static void
write_creds(const char *dir, const char *name, const char *jwt, const Key *user)
{
	char	   *text = malloc(strlen(jwt) + 1000);

	sprintf(text,
			"-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
			"************************* IMPORTANT *************************\n"
			"NKEY Seed printed below can be used to sign and prove identity.\n"
			"NKEYs are sensitive and should be treated as secrets.\n\n"
			"-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n\n"
			"*************************************************************\n",
			jwt, user->seed_text);
	write_file(dir, name, text);
	free(text);
}

static char *
user_jwt(const Key *account, const Key *user, const char *name, long iat, const char *exp)
{
	char		claims[1000];

	snprintf(claims, sizeof(claims),
			 "%s\"name\":\"%s\",\"sub\":\"%s\",\"nats\":{\"pub\":{},\"sub\":{},"
			 "\"subs\":-1,\"data\":-1,\"payload\":-1,\"type\":\"user\",\"version\":2}",
			 exp, name, user->public_text);
	return make_jwt(account, iat, claims);
}

static int
make_creds(const char *dir)
{
	Key			op, sys, app, good, revoked, expired;
	long		now = (long) time(NULL);
	char		claims[2000];
	char		exp[64];
	char	   *op_jwt;
	char	   *sys_jwt;
	char	   *app_jwt;
	char	   *conf;
	const char *limits =
		"\"limits\":{\"subs\":-1,\"data\":-1,\"payload\":-1,\"imports\":-1,"
		"\"exports\":-1,\"wildcards\":true,\"conn\":-1,\"leaf\":-1";

	make_key(&op, PREFIX_OPERATOR);
	make_key(&sys, PREFIX_ACCOUNT);
	make_key(&app, PREFIX_ACCOUNT);
	make_key(&good, PREFIX_USER);
	make_key(&revoked, PREFIX_USER);
	make_key(&expired, PREFIX_USER);

	snprintf(claims, sizeof(claims),
			 "\"name\":\"herald-test\",\"sub\":\"%s\",\"nats\":{\"system_account\":\"%s\","
			 "\"type\":\"operator\",\"version\":2}", op.public_text, sys.public_text);
	op_jwt = make_jwt(&op, now - 60, claims);
	snprintf(claims, sizeof(claims),
			 "\"name\":\"SYS\",\"sub\":\"%s\",\"nats\":{%s},"
			 "\"type\":\"account\",\"version\":2}", sys.public_text, limits);
	sys_jwt = make_jwt(&op, now - 60, claims);
	/* JetStream for APP: storage limits; revoked's JWTs up to now are revoked */
	snprintf(claims, sizeof(claims),
			 "\"name\":\"APP\",\"sub\":\"%s\",\"nats\":{%s,\"mem_storage\":-1,"
			 "\"disk_storage\":-1,\"streams\":-1,\"consumer\":-1},"
			 "\"revocations\":{\"%s\":%ld},\"type\":\"account\",\"version\":2}",
			 app.public_text, limits, revoked.public_text, now);
	app_jwt = make_jwt(&op, now - 60, claims);

	write_file(dir, "operator.jwt", op_jwt);
	conf = malloc(strlen(sys_jwt) + strlen(app_jwt) + 1000);
	sprintf(conf, "system_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: \"%s\"\n  %s: \"%s\"\n}\n",
			sys.public_text, sys.public_text, sys_jwt, app.public_text, app_jwt);
	write_file(dir, "server.conf-resolver", conf);

	write_creds(dir, "good.creds", user_jwt(&app, &good, "good", now - 60, ""), &good);
	write_creds(dir, "wrong-seed.creds", user_jwt(&app, &good, "good", now - 60, ""), &revoked);
	write_creds(dir, "revoked.creds", user_jwt(&app, &revoked, "revoked", now - 60, ""), &revoked);
	snprintf(exp, sizeof(exp), "\"exp\":%ld,", now - 3600);
	write_creds(dir, "expired.creds", user_jwt(&app, &expired, "expired", now - 7200, exp), &expired);
	printf("operator=%s app=%s good=%s\n", op.public_text, app.public_text, good.public_text);
	return 0;
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx	   *js = NULL;
	natsOptions *opts = NULL;
	natsStatus	s;
	jsErrCode	jerr = 0;
	const char *creds = getenv("NATS_TOOL_CREDS");

	if (argc == 3 && strcmp(argv[1], "creds") == 0)
		return make_creds(argv[2]);
	if (argc < 4)
	{
		fprintf(stderr, "usage: see the comment at the top of nats_tool.c\n");
		return 2;
	}
	s = natsOptions_Create(&opts);
	{
		/* SERVERS, comma-separated, as natsConnection_ConnectTo takes them */
		char	   *list = strdup(argv[2]);
		const char *urls[64];
		int			n = 0;

		for (char *u = strtok(list, ","); u && n < 64; u = strtok(NULL, ","))
			urls[n++] = u;
		if (s == NATS_OK)
			s = natsOptions_SetServers(opts, urls, n);
		free(list);
	}
	if (s == NATS_OK && creds && creds[0])
		s = natsOptions_SetUserCredentialsFromFiles(opts, creds, NULL);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, opts);
	natsOptions_Destroy(opts);
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
