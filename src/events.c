/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The event ring behind role_guard_events: the latest refusals,
 *	  would-be refusals, superuser denials and reaps.
 *
 * Shared memory: one RGEventRing, role_guard.event_log_size entries long,
 * in parts, each a circle of its own: a quarter of the entries (at least
 * one) keeps the security events (rg_event_part), the rest everything
 * else.  So no number of budget refusals, waits, reaps or evictions (which
 * any authenticated role can cause) pushes a security event out: only
 * newer security events do.  The quarter is itself split in two halves
 * when it has two entries or more: superuser denials in one, login blocks
 * in the other, so that a client spraying failed logins under new role
 * names (each block it starts is an event, and needs no password) cannot
 * push the denials out either.  A ring of one entry has one part for all.
 * The view merges the parts, newest first.
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

/* One part of the ring: events[first .. first + size - 1], a circle. */
typedef struct RGEventPart
{
	int			first;
	int			size;
	uint64		written;		/* events ever written to it since reset */
} RGEventPart;

#define RG_PART_GENERAL		0
#define RG_PART_DENIALS		1	/* superuser denials */
#define RG_PART_BLOCKS		2	/* login blocks */
#define RG_NPARTS			3

typedef struct RGEventRing
{
	LWLock	   *lock;
	int			size;			/* entries in events[] */
	RGEventPart parts[RG_NPARTS];	/* sizes may be 0 (a small ring) */
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

/*
 * The part an event kind is kept in: superuser denials (and what monitor
 * mode would deny) in the denials' part, the login blocks after failed
 * authentications in the blocks' part, anything else in the general one.
 * A part of no entries hands its events down to the one before it.
 */
static int
rg_event_part(RGEventKind kind)
{
	int			part;

	switch (kind)
	{
		case RG_EVENT_SUPERUSER_DENIED:
		case RG_EVENT_WOULD_DENY:
			part = RG_PART_DENIALS;
			break;
		case RG_EVENT_AUTH_BLOCKED:
		case RG_EVENT_WOULD_BLOCK:
			part = RG_PART_BLOCKS;
			break;
		default:
			part = RG_PART_GENERAL;
			break;
	}
	while (part > RG_PART_GENERAL && rg_ring->parts[part].size == 0)
		part--;
	return part;
}

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
		int			security = rg_event_log_size >= 2 ? Max(1, rg_event_log_size / 4) : 0;
		int			blocks = security / 2;
		int			sizes[RG_NPARTS];
		int			first = 0;

		sizes[RG_PART_GENERAL] = rg_event_log_size - security;
		sizes[RG_PART_DENIALS] = security - blocks;
		sizes[RG_PART_BLOCKS] = blocks;
		memset(rg_ring, 0, rg_events_shmem_size());
		rg_ring->lock = lock;
		rg_ring->size = rg_event_log_size;
		for (int p = 0; p < RG_NPARTS; p++)
		{
			rg_ring->parts[p].first = first;
			rg_ring->parts[p].size = sizes[p];
			first += sizes[p];
		}
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

/* Put an event after the newest of its part.  Lock held exclusively. */
static void
rg_event_put(const RGEvent *ev)
{
	RGEventPart *part = &rg_ring->parts[rg_event_part((RGEventKind) ev->kind)];

	memcpy(&rg_ring->events[part->first + part->written % part->size], ev,
		   sizeof(RGEvent));
	part->written++;
}

void
rg_event_add(const RGEvent *ev)
{
	if (rg_ring == NULL || rg_ring->size == 0)
		return;
	LWLockAcquire(rg_ring->lock, LW_EXCLUSIVE);
	rg_event_put(ev);
	LWLockRelease(rg_ring->lock);
}

void
rg_events_reset(void)
{
	if (rg_ring == NULL)
		return;
	LWLockAcquire(rg_ring->lock, LW_EXCLUSIVE);
	for (int p = 0; p < RG_NPARTS; p++)
		rg_ring->parts[p].written = 0;
	LWLockRelease(rg_ring->lock);
}

/* Events a part holds now.  Lock held. */
static int
rg_part_count(const RGEventPart *part)
{
	return (int) Min(part->written, (uint64) part->size);
}

/* A part's i-th newest event (i < rg_part_count).  Lock held. */
static const RGEvent *
rg_part_event(const RGEventPart *part, int i)
{
	return &rg_ring->events[part->first + (part->written - 1 - i) % part->size];
}

/* A part's i-th oldest event (i < rg_part_count).  Lock held. */
static const RGEvent *
rg_part_oldest(const RGEventPart *part, int i)
{
	return rg_part_event(part, rg_part_count(part) - 1 - i);
}

/* Events the ring holds now, all parts.  Lock held. */
static int
rg_ring_count(void)
{
	int			n = 0;

	for (int p = 0; p < RG_NPARTS; p++)
		n += rg_part_count(&rg_ring->parts[p]);
	return n;
}

/*
 * The parts merged by time: the part whose next event (its taken[p]-th,
 * newest first, or oldest first) comes first in that order, or -1 when
 * every part is done.  Lock held (or no other process).
 */
static int
rg_ring_next(const int *taken, bool oldest_first)
{
	int			best = -1;
	TimestampTz best_at = 0;

	for (int p = 0; p < RG_NPARTS; p++)
	{
		const RGEventPart *part = &rg_ring->parts[p];
		TimestampTz at;

		if (taken[p] >= rg_part_count(part))
			continue;
		at = (oldest_first ? rg_part_oldest(part, taken[p]) :
			  rg_part_event(part, taken[p]))->at;
		if (best < 0 || (oldest_first ? at < best_at : at > best_at))
		{
			best = p;
			best_at = at;
		}
	}
	return best;
}

/*
 * For the save file (persist.c), at shutdown when no other process runs
 * (no lock): pass every event the ring holds to "emit", oldest first (the
 * two parts merged by time), until it returns false.  Returns how many
 * were passed, -1 if "emit" stopped.
 */
int
rg_events_each(bool (*emit) (const RGEvent *ev, void *arg), void *arg)
{
	int			taken[RG_NPARTS] = {0};
	int			p;

	if (rg_ring == NULL || rg_ring->size == 0)
		return 0;
	while ((p = rg_ring_next(taken, true)) >= 0)
	{
		if (!emit(rg_part_oldest(&rg_ring->parts[p], taken[p]++), arg))
			return -1;
	}
	return rg_ring_count();
}

/*
 * Put back a saved event after the newest of its part (persist.c, at
 * start, before any other process exists: no lock).  Events are given
 * oldest first, so a part smaller than what was saved keeps the newest.
 */
void
rg_event_restore(const RGEvent *ev)
{
	if (rg_ring == NULL || rg_ring->size == 0)
		return;
	rg_event_put(ev);
}

/* Events the ring holds now (no lock: at start, as rg_event_restore). */
int
rg_events_count(void)
{
	if (rg_ring == NULL)
		return 0;
	return rg_ring_count();
}

/*
 * Copy the newest "room" events of all parts into copy[], newest first:
 * the parts merged by time.  Returns how many.  Lock held.
 */
static int
rg_events_merge(RGEvent *copy, int room)
{
	int			taken[RG_NPARTS] = {0};
	int			n = 0;
	int			p;

	while (n < room && (p = rg_ring_next(taken, false)) >= 0)
		copy[n++] = *rg_part_event(&rg_ring->parts[p], taken[p]++);
	return n;
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
		int			n;

		LWLockAcquire(rg_ring->lock, LW_SHARED);
		n = rg_ring_count();
		if (n <= room || tries >= 3)
		{
			n = room > 0 ? rg_events_merge(copy, room) : 0;
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
