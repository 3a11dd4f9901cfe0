/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The event ring behind role_guard_events: the latest refusals,
 *	  would-be refusals, superuser denials and reaps.
 *
 * Shared memory: one RGEventRing, role_guard.event_log_size entries long.
 *
 * Locking rules: the ring has its own LWLock (the second of the
 * "role_guard" tranche), never taken together with the counters' lock, so
 * reading the view cannot hold up an admission.  A writer holds it
 * exclusively for one memcpy of a prepared entry; a reader holds it shared
 * while it copies the ring out.  Nothing under it allocates or errors.
 *
 * client_addr is text that the view turns into inet: it is written from
 * the binary address by the inet type's own formatter (so never with an
 * IPv6 zone such as "fe80::2%eth0", which inet does not take), and read back
 * without inet_in, so that no text in the ring can make the view fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"

#include "role_guard.h"

typedef struct RGEventRing
{
	LWLock	   *lock;
	int			size;			/* entries in events[] */
	uint64		written;		/* events ever written since reset */
	RGEvent		events[FLEXIBLE_ARRAY_MEMBER];
} RGEventRing;

static RGEventRing *rg_ring = NULL;

static const char *const rg_event_names[] = {
	[RG_EVENT_REJECTED] = "rejected",
	[RG_EVENT_WOULD_REJECT] = "would_reject",
	[RG_EVENT_SUPERUSER_DENIED] = "superuser_denied",
	[RG_EVENT_WOULD_DENY] = "would_deny",
	[RG_EVENT_REAPED_IDLE] = "reaped_idle",
	[RG_EVENT_REAPED_IDLE_IN_TRANSACTION] = "reaped_idle_in_transaction",
	[RG_EVENT_WOULD_REAP] = "would_reap",
	[RG_EVENT_EVICTED] = "evicted",
	[RG_EVENT_WOULD_EVICT] = "would_evict",
	[RG_EVENT_WAIT_TIMEOUT] = "wait_timeout",
	[RG_EVENT_ACTIVE_REJECTED] = "active_rejected",
	[RG_EVENT_WOULD_WAIT] = "would_wait",
	[RG_EVENT_AUTH_BLOCKED] = "auth_blocked",
	[RG_EVENT_WOULD_BLOCK] = "would_block",
};

/* An event kind's name, as role_guard_events shows it. */
const char *
rg_event_name(int kind)
{
	if (kind >= 0 && kind < (int) lengthof(rg_event_names) &&
		rg_event_names[kind] != NULL)
		return rg_event_names[kind];
	return "unknown";
}

Size
rg_events_shmem_size(void)
{
	return add_size(offsetof(RGEventRing, events),
					mul_size(rg_event_log_size, sizeof(RGEvent)));
}

/* Called from shmem.c's startup hook, AddinShmemInitLock held. */
void
rg_events_shmem_init(LWLock *lock)
{
	bool		found;

	rg_ring = ShmemInitStruct("role_guard events", rg_events_shmem_size(), &found);
	if (!found)
	{
		memset(rg_ring, 0, rg_events_shmem_size());
		rg_ring->lock = lock;
		rg_ring->size = rg_event_log_size;
	}
}

/*
 * Start an event: zeroed, timestamped, with the given kind.  The caller
 * fills what applies and passes it to rg_event_add.
 */
void
rg_event_init(RGEvent *ev, RGEventKind kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->at = GetCurrentTimestamp();
	ev->kind = kind;
}

/*
 * Fill client_addr from a client's address (left empty for a Unix socket).
 *
 * The text is what inet_out would print for the address as a host (/32 or
 * /128), made from the address's bytes: the same value core shows in
 * pg_stat_activity.client_addr, which takes pg_getnameinfo_all's text and
 * strips the zone (clean_ipv6_addr) that a link-local IPv6 client's text
 * carries ("fe80::2%eth0").  No zone, scope id or port is ever written.
 */
void
rg_event_client(RGEvent *ev, const SockAddr *client)
{
	const struct sockaddr_storage *ss = &client->addr;
	const void *addr;
	int			family;
	int			bits;

	ev->client_addr[0] = '\0';
	switch (ss->ss_family)
	{
		case AF_INET:
			addr = &((const struct sockaddr_in *) ss)->sin_addr;
			family = PGSQL_AF_INET;
			bits = 32;
			break;
		case AF_INET6:
			addr = &((const struct sockaddr_in6 *) ss)->sin6_addr;
			family = PGSQL_AF_INET6;
			bits = 128;
			break;
		default:
			return;
	}
	if (pg_inet_net_ntop(family, addr, bits, ev->client_addr,
						 sizeof(ev->client_addr)) == NULL)
		ev->client_addr[0] = '\0';
}

void
rg_event_add(const RGEvent *ev)
{
	if (rg_ring == NULL || rg_ring->size == 0)
		return;
	LWLockAcquire(rg_ring->lock, LW_EXCLUSIVE);
	memcpy(&rg_ring->events[rg_ring->written % rg_ring->size], ev, sizeof(RGEvent));
	rg_ring->written++;
	LWLockRelease(rg_ring->lock);
}

void
rg_events_reset(void)
{
	if (rg_ring == NULL)
		return;
	LWLockAcquire(rg_ring->lock, LW_EXCLUSIVE);
	rg_ring->written = 0;
	LWLockRelease(rg_ring->lock);
}

/*
 * Copy the newest events out of the ring, newest first, into a palloc'd
 * array sized for the events the ring holds (not for its size: the ring may
 * be a million entries long and empty).  The count is read under the lock,
 * the array allocated outside it, and the copy made under the lock again;
 * if events came meanwhile and no longer fit, the array is made bigger and
 * the copy done again (a few times at most; then the newest that fit are
 * returned).  Sets *nevents; returns NULL when there are none.
 */
RGEvent *
rg_events_copy(int *nevents)
{
	RGEvent    *copy = NULL;
	int			room = 0;
	int			tries;

	for (tries = 0;; tries++)
	{
		uint64		written;
		int			n;
		int			i;

		LWLockAcquire(rg_ring->lock, LW_SHARED);
		written = rg_ring->written;
		n = (int) Min(written, (uint64) rg_ring->size);
		if (n <= room || tries >= 3)
		{
			n = Min(n, room);
			for (i = 0; i < n; i++)
				copy[i] = rg_ring->events[(written - 1 - i) % rg_ring->size];
			LWLockRelease(rg_ring->lock);
			*nevents = n;
			return copy;
		}
		LWLockRelease(rg_ring->lock);

		/* room for what is there now and a few more (never past the ring) */
		if (copy != NULL)
			pfree(copy);
		room = Min(n + 16, rg_ring->size);
		copy = palloc(mul_size(sizeof(RGEvent), room));
	}
}
