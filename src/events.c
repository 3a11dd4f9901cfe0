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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/ip.h"
#include "fmgr.h"
#include "funcapi.h"
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
};

PG_FUNCTION_INFO_V1(role_guard_events);

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

/* Fill client_addr from a client's address (left empty for a Unix socket). */
void
rg_event_client(RGEvent *ev, const SockAddr *client)
{
	if (client->addr.ss_family != AF_INET && client->addr.ss_family != AF_INET6)
		return;
	if (pg_getnameinfo_all(&client->addr, client->salen, ev->client_addr,
						   sizeof(ev->client_addr), NULL, 0, NI_NUMERICHOST) != 0)
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

/* role_guard_events(): the ring, newest first. */
Datum
role_guard_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RGEvent    *copy;
	uint64		written;
	int			n;
	int			i;

	rg_require_loaded();
	InitMaterializedSRF(fcinfo, 0);
	if (rg_ring->size == 0)
		return (Datum) 0;

	copy = palloc(sizeof(RGEvent) * rg_ring->size);
	LWLockAcquire(rg_ring->lock, LW_SHARED);
	written = rg_ring->written;
	n = (int) Min(written, (uint64) rg_ring->size);
	for (i = 0; i < n; i++)
		copy[i] = rg_ring->events[(written - 1 - i) % rg_ring->size];
	LWLockRelease(rg_ring->lock);

	for (i = 0; i < n; i++)
	{
		RGEvent    *ev = &copy[i];
		Datum		values[8];
		bool		nulls[8];

		memset(nulls, 0, sizeof(nulls));
		values[0] = TimestampTzGetDatum(ev->at);
		values[1] = CStringGetTextDatum(rg_event_names[ev->kind]);
		values[2] = NameGetDatum(&ev->rolname);
		nulls[2] = NameStr(ev->rolname)[0] == '\0';
		values[3] = NameGetDatum(&ev->datname);
		nulls[3] = NameStr(ev->datname)[0] == '\0';
		if (ev->client_addr[0] != '\0')
			values[4] = DirectFunctionCall1(inet_in, CStringGetDatum(ev->client_addr));
		else
			nulls[4] = true;
		values[5] = CStringGetTextDatum(ev->application_name);
		nulls[5] = ev->application_name[0] == '\0';
		values[6] = Int32GetDatum(ev->pid);
		nulls[6] = ev->pid == 0;
		values[7] = CStringGetTextDatum(ev->detail);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(copy);
	return (Datum) 0;
}
