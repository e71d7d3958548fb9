/*-------------------------------------------------------------------------
 *
 * network.c
 *		The network policy: herald.deny_networks and herald.allow_networks.
 *
 * Both settings are lists of networks in CIDR notation ("10.0.0.0/8,
 * fd00::/8"; an address alone is a single host).  The delivery worker
 * checks the address of every connection it is about to open, after name
 * resolution (http.c asks through libcurl's open-socket callback), so a
 * name that resolves to a denied address is refused too, and no
 * connection is ever opened to it: an address in a denied network is
 * refused, and when allow_networks is not empty, so is any address outside
 * it.  The default denies the cloud metadata endpoints.
 *
 * The lists are parsed by the settings' check hooks, so a malformed value
 * is refused when it is set, and kept as the settings' "extra" data.
 *
 * herald.ca_file names a file of CA certificates (PEM) that the workers
 * trust for TLS besides the system's: libcurl's (http.c: HTTPS, SMTPS and
 * STARTTLS) and tls:// NATS connections (nats.c).  Certificate and host
 * name verification are always on.  The setting is the superuser's (the
 * DBA owns trust; a per-channel file would let a channel's administrator
 * make the worker read any file of the server's), and the file is opened
 * anew by every connection, so that an unreadable file is an error of each
 * attempt and a reload applies at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "utils/guc.h"

#include "compat.h"
#include "pg_herald.h"

typedef struct Network
{
	int			family;			/* AF_INET or AF_INET6 */
	uint8		addr[16];
	int			bits;
	char		text[64];		/* as written, for messages */
} Network;

typedef struct NetworkList
{
	int			n;
	Network		nets[FLEXIBLE_ARRAY_MEMBER];
} NetworkList;

static NetworkList *deny_list = NULL;
static NetworkList *allow_list = NULL;

char	   *herald_ca_file = NULL;

/* Parse one "address[/bits]"; false when malformed. */
static bool
parse_network(const char *item, Network *net)
{
	char		buf[64];
	char	   *slash;
	int			max_bits;

	if (strlen(item) >= sizeof(buf))
		return false;
	strlcpy(buf, item, sizeof(buf));
	strlcpy(net->text, item, sizeof(net->text));
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(net->addr, 0, sizeof(net->addr));
	if (inet_pton(AF_INET, buf, net->addr) == 1)
	{
		net->family = AF_INET;
		max_bits = 32;
	}
	else if (inet_pton(AF_INET6, buf, net->addr) == 1)
	{
		net->family = AF_INET6;
		max_bits = 128;
	}
	else
		return false;
	net->bits = max_bits;
	if (slash)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > max_bits)
			return false;
		net->bits = (int) bits;
	}
	return true;
}

/*
 * Check hook shared by both settings: parse the list into extra data (the
 * GUC code's to free), or refuse the value naming the bad entry.
 */
static bool
check_networks(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	char	   *item;
	char	   *save = NULL;
	int			n = 0;
	NetworkList *list;

	for (char *p = copy; *p; p++)
		if (*p == ',')
			n++;
	list = herald_guc_malloc(offsetof(NetworkList, nets) + sizeof(Network) * (n + 1));
	if (list == NULL)
		return false;
	list->n = 0;
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		if (!parse_network(item, &list->nets[list->n]))
		{
			GUC_check_errdetail("\"%s\" is not a network in CIDR notation, such as 10.0.0.0/8 or fd00::/8.",
								item);
			herald_guc_free(list);
			return false;
		}
		list->n++;
	}
	*extra = list;
	return true;
}

static void
assign_deny(const char *newval, void *extra)
{
	deny_list = extra;
}

static void
assign_allow(const char *newval, void *extra)
{
	allow_list = extra;
}

static bool
in_network(const Network *net, int family, const uint8 *addr)
{
	int			full = net->bits / 8;
	int			rest = net->bits % 8;

	if (net->family != family)
		return false;
	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net->addr[full] ^ addr[full]) & (0xFF << (8 - rest)) & 0xFF) == 0;
}

static const Network *
find_network(const NetworkList *list, int family, const uint8 *addr)
{
	for (int i = 0; list && i < list->n; i++)
		if (in_network(&list->nets[i], family, addr))
			return &list->nets[i];
	return NULL;
}

/*
 * A copy of the policy in force, in memory of its own (malloc'd, one block:
 * free() it), for the threads of nats.c, which must not read the settings
 * while a reload may replace them.  NULL when out of memory.
 */
struct HeraldNetworkPolicy
{
	NetworkList *deny;
	NetworkList *allow;
};

static size_t
list_size(const NetworkList *list)
{
	return list ? offsetof(NetworkList, nets) + sizeof(Network) * list->n : 0;
}

HeraldNetworkPolicy *
herald_network_policy_copy(void)
{
	size_t		deny_size = MAXALIGN(list_size(deny_list));
	size_t		allow_size = list_size(allow_list);
	char	   *block = malloc(MAXALIGN(sizeof(HeraldNetworkPolicy)) + deny_size + allow_size);
	HeraldNetworkPolicy *policy = (HeraldNetworkPolicy *) block;

	if (block == NULL)
		return NULL;
	block += MAXALIGN(sizeof(HeraldNetworkPolicy));
	policy->deny = deny_list ? memcpy(block, deny_list, list_size(deny_list)) : NULL;
	policy->allow = allow_list ? memcpy(block + deny_size, allow_list, allow_size) : NULL;
	return policy;
}

static bool address_allowed(const NetworkList *deny, const NetworkList *allow,
							const struct sockaddr *sa, char *why, size_t whylen);

/* herald_network_allowed() for a copy of the policy; safe in any thread. */
bool
herald_network_policy_allows(const HeraldNetworkPolicy *policy,
							 const struct sockaddr *sa, char *why, size_t whylen)
{
	return address_allowed(policy->deny, policy->allow, sa, why, whylen);
}

/*
 * May the worker connect to this address?  When not, why says so, naming
 * the address and the setting.  IPv4 addresses mapped into IPv6
 * (::ffff:a.b.c.d) are checked as IPv4 too.  Called from inside libcurl:
 * raises no error.
 */
bool
herald_network_allowed(const struct sockaddr *sa, char *why, size_t whylen)
{
	return address_allowed(deny_list, allow_list, sa, why, whylen);
}

/* The check itself: plain C on the lists given, no PostgreSQL call. */
static bool
address_allowed(const NetworkList *deny, const NetworkList *allow,
				const struct sockaddr *sa, char *why, size_t whylen)
{
	uint8		addr[16];
	int			family = sa->sa_family;
	char		text[INET6_ADDRSTRLEN];
	const Network *denied;

	memset(addr, 0, sizeof(addr));
	if (family == AF_INET)
		memcpy(addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
	else if (family == AF_INET6)
	{
		memcpy(addr, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) addr))
		{
			memmove(addr, addr + 12, 4);
			memset(addr + 4, 0, 12);
			family = AF_INET;
		}
	}
	else
	{
		snprintf(why, whylen, "connection refused: address family %d is not allowed", family);
		return false;
	}
	if (inet_ntop(family, addr, text, sizeof(text)) == NULL)
		strlcpy(text, "?", sizeof(text));

	/* 0.0.0.0 and :: reach this machine's own services: never a target */
	{
		static const uint8 zero[16] = {0};

		if ((family == AF_INET && addr[0] == 0) ||
			(family == AF_INET6 && memcmp(addr, zero, 16) == 0))
		{
			snprintf(why, whylen, "connection to %s refused: unspecified address", text);
			return false;
		}
	}

	denied = find_network(deny, family, addr);
	if (denied)
	{
		snprintf(why, whylen,
				 "connection to %s refused by herald.deny_networks (%s)", text, denied->text);
		return false;
	}
	if (allow && allow->n > 0 && !find_network(allow, family, addr))
	{
		snprintf(why, whylen,
				 "connection to %s refused: not in herald.allow_networks", text);
		return false;
	}
	return true;
}

/* herald.ca_file: empty, or an absolute path (the workers' cwd is no user's). */
static bool
check_ca_file(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("herald.ca_file must be an absolute path, or empty for the system's CA certificates only.");
		return false;
	}
	if (strlen(*newval) >= MAXPGPATH)
	{
		GUC_check_errdetail("herald.ca_file is longer than %d bytes.", MAXPGPATH - 1);
		return false;
	}
	return true;
}

void
herald_define_network_settings(void)
{
	DefineCustomStringVariable("herald.deny_networks",
							   "Networks the workers never connect to (CIDR list).",
							   "Checked against the resolved address of every connection. "
							   "The default denies the cloud metadata endpoints.",
							   &herald_deny_networks,
							   "169.254.169.254/32, fd00:ec2::254/128",
							   PGC_SIGHUP,
							   0,
							   check_networks, assign_deny, NULL);

	DefineCustomStringVariable("herald.allow_networks",
							   "When not empty, the only networks the workers connect to (CIDR list).",
							   NULL,
							   &herald_allow_networks,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_networks, assign_allow, NULL);

	DefineCustomStringVariable("herald.ca_file",
							   "File of CA certificates (PEM) trusted for TLS, besides the system's.",
							   "Used by HTTPS, SMTPS and STARTTLS requests and by tls:// NATS "
							   "connections. Empty: the system's CA certificates only.",
							   &herald_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_ca_file, NULL, NULL);
}
