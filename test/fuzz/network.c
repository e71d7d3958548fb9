/*
 * Fuzz the network policy (src/network.c): herald.deny_networks and
 * herald.allow_networks as a superuser may write them (a list of CIDR
 * networks, checked by the settings' check hook), then the decision on
 * addresses a hostile DNS answer may give.  The input is "deny\0allow\0"
 * then addresses: a byte (even: IPv4, odd: IPv6) and 4 or 16 bytes.
 * Properties: the base address of every denied network is refused, and
 * with an allow list, an address that is refused never has a reason that
 * names nothing.
 */
#include "../../src/network.c"

#include "fuzz.h"

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[3];
	void	   *deny_extra = NULL;
	void	   *allow_extra = NULL;
	const uint8 *p;
	const uint8 *end;
	char		why[160];

	herald_fuzz_split(in->data, in->size, parts, 3);
	/* the check hook gets what the GUC code would: a malloc'd string */
	if (!check_networks(&parts[0], &deny_extra, PGC_S_FILE))
		return;
	if (!check_networks(&parts[1], &allow_extra, PGC_S_FILE))
	{
		herald_guc_free(deny_extra);
		return;
	}
	assign_deny(parts[0], deny_extra);
	assign_allow(parts[1], allow_extra);

	/* every denied network's own address is refused */
	for (int i = 0; i < deny_list->n; i++)
	{
		const Network *net = &deny_list->nets[i];
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		if (net->family == AF_INET)
		{
			struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, net->addr, 4);
		}
		else
		{
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

			Assert(net->family == AF_INET6);
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, net->addr, 16);
		}
		if (herald_network_allowed((struct sockaddr *) &ss, why, sizeof(why)))
			abort();
	}

	/* the addresses the rest of the input names */
	p = (const uint8 *) parts[2];
	end = p + strlen(parts[2]);
	while (p < end)
	{
		struct sockaddr_storage ss;
		bool		v6 = (*p & 1) != 0;
		int			n = v6 ? 16 : 4;

		p++;
		if (end - p < n)
			break;
		memset(&ss, 0, sizeof(ss));
		if (v6)
		{
			((struct sockaddr_in6 *) &ss)->sin6_family = AF_INET6;
			memcpy(&((struct sockaddr_in6 *) &ss)->sin6_addr, p, 16);
		}
		else
		{
			((struct sockaddr_in *) &ss)->sin_family = AF_INET;
			memcpy(&((struct sockaddr_in *) &ss)->sin_addr, p, 4);
		}
		p += n;
		why[0] = '\0';
		if (!herald_network_allowed((struct sockaddr *) &ss, why, sizeof(why)) &&
			strlen(why) == 0)
			abort();
	}

	deny_list = allow_list = NULL;
	herald_guc_free(deny_extra);
	herald_guc_free(allow_extra);
}

HERALD_FUZZ_TARGET(one)
