/*-------------------------------------------------------------------------
 *
 * reserve.c
 *	  Reservations: connection slots kept for roles and groups
 *	  (role_guard.reservations).
 *
 * A reservation "crit=4" keeps places for 4 sessions of role crit, "+ops=3"
 * for 3 sessions of the members of ops together.  role_guard keeps, at every
 * moment, at least as many free connection slots as the reservations have
 * unused places, counting slots as core does for a login without special
 * privileges (rg_connection_slots: max_connections less the reserved ones):
 *
 *	  slots - sessions using a slot  >=  unused places
 *
 * A login that would break this is refused; a login that fills an unused
 * place of a reservation covering it never breaks it (both sides drop by
 * one), so it is never refused for the sake of reservations.  Walsenders
 * have slots of their own: they are neither refused nor counted as using a
 * slot (they do count toward their role's reservation).
 *
 * The state is in shared memory (shmem.h): each reservation's places sit in
 * the counter whose count it covers (a role's "reserved" beside its
 * connections, a group's "member_reserved" beside its member count), and
 * RGReserveState.unused is kept in step by every change of a count or a
 * reservation (rg_counter_set, rg_counter_add, rg_counter_reserve).  So a
 * login's check is O(its role and groups), whatever the number of entries,
 * and exits give places back without knowing the policy.
 *
 * Only a process whose copy of the settings is the postmaster's applies
 * its list (rg_policy_current, checked under the lock): a login that began
 * before a reload, or a session that has not processed it yet, never puts
 * an older list back over the newer one.
 *
 * Applying a list: counters are keyed by OID and entries name roles, so the
 * names are resolved (syscache, before the lock) by the first login that
 * finds the applied list stale: another list (a reload) or another
 * generation of the membership cache (a role created, renamed or dropped,
 * members.c).  Under the lock it then clears the reservations applied before
 * (the counters that hold one are linked in a list from RGReserveState),
 * sets the new ones and recounts the unused places: O(entries), once per
 * change, whatever the number of counters.  An entry that names no role keeps its places free for nobody
 * until the role exists.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"

#include "compat.h"
#include "role_guard.h"

/*
 * Before the lock: if the applied list is not this backend's, resolve the
 * entries' names to role OIDs into *resolved (palloc'd, one per entry;
 * InvalidOid for a name with no role).  The shared fields are read without
 * the lock: rg_reserve_apply checks again under it.
 */
/* Is the applied list other than this process's?  (No lock: a glance.) */
bool
rg_reserve_stale(void)
{
	RGReserveState *rs = &rg_shared->reserve;

	return !rs->applied || rs->hash != rg_reservations_hash ||
		rs->generation != rg_members_generation();
}

bool
rg_reserve_resolve(RGReserveResolved *resolved)
{
	const RGPolicy *policy = rg_reservations;
	uint64		generation = rg_members_generation();
	int			i;

	resolved->oids = NULL;
	if (!rg_reserve_stale())
		return false;
	resolved->hash = rg_reservations_hash;
	resolved->generation = generation;
	resolved->nentries = policy ? policy->nentries : 0;
	resolved->oids = palloc(sizeof(Oid) * Max(resolved->nentries, 1));
	for (i = 0; i < resolved->nentries; i++)
		resolved->oids[i] = get_role_oid(policy->entries[i].name, true);
	return true;
}

/*
 * Under the lock, exclusively: make the resolved list the applied one,
 * unless another login did so meanwhile.  Every counter's reservation is
 * set from scratch and the unused places recounted.
 */
void
rg_reserve_apply(const RGReserveResolved *resolved)
{
	const RGPolicy *policy = rg_reservations;
	RGReserveState *rs = &rg_shared->reserve;
	RGCounter  *c,
			   *next;
	int			i;

	if (resolved->oids == NULL ||
		(rs->applied && rs->hash == resolved->hash &&
		 rs->generation == resolved->generation))
		return;
	/* never a list other than the postmaster's (guc.c): an older one */
	if (!rg_policy_current())
		return;

	/*
	 * The reservations applied before go, from their list (never a scan of
	 * the table); a counter that only held one goes with it.
	 */
	for (c = rs->first; c != NULL; c = next)
	{
		next = c->next_reserved;
		c->next_reserved = NULL;
		rg_counter_reserve(c, false, 0);
		rg_counter_reserve(c, true, 0);
		rg_counter_forget_if_unused(c);
	}
	rs->first = NULL;
	rs->unused = 0;
	rs->unbacked = 0;
	rs->places = 0;
	for (i = 0; i < resolved->nentries; i++)
	{
		const RGEntry *e = &policy->entries[i];
		bool		member = e->kind == RG_ENTRY_GROUP;

		rs->places += e->value;
		c = OidIsValid(resolved->oids[i]) ?
			rg_counter_enter(RG_COUNTER_ROLE, resolved->oids[i], InvalidOid) : NULL;
		if (c == NULL)
		{
			rs->unbacked += e->value;	/* no such role, or no room */
			continue;
		}
		if (member)
			rg_counter_track_members(c);
		/*
		 * Listed while it holds places (so it is never removed meanwhile):
		 * a counter that holds some already is listed (entries are unique,
		 * so a second one names its other count).
		 */
		if (e->value > 0 && c->reserved == 0 && c->member_reserved == 0)
		{
			c->next_reserved = rs->first;
			rs->first = c;
		}
		rg_counter_reserve(c, member, e->value);
		rg_counter_unpin(c);
	}
	rs->unused += rs->unbacked;
	rs->applied = true;
	rs->hash = resolved->hash;
	rs->generation = resolved->generation;
}

/* Does this counter have an unused reserved place for one more session? */
static inline bool
rg_has_unused(const RGCounter *c, bool member)
{
	return c != NULL &&
		(member ? c->member_reserved > c->member_connections :
		 c->reserved > c->connections);
}

/*
 * Do core's free process slots keep what must stay free, with "unused"
 * reserved places?  Lock held.  A login that fills none of them holds a
 * process slot already (InitProcess, before the hook), as does a waiting
 * one: what is free now must cover each unused place (its login's own
 * slot) and still leave core's reserved slots (superuser_reserved_
 * connections, and from PG16 reserved_connections), which core checks
 * for every login without special privileges after the hook.  Core's free
 * list sees every backend, also those role_guard does not count: logins
 * still authenticating, and refused ones on their way out.
 *
 * Only for logins outside the reservations that do not wait yet: a login
 * that wants to wait is held to role_guard's count alone (rg_wait_wanted),
 * as logins on their way would otherwise keep one another from waiting in
 * a burst, though most of them are refused and leave a moment later; and a
 * waiter decided again already holds its slot, counted among the waiters,
 * so admitting it takes no slot more.
 */
static bool
rg_reserve_slots_kept(int unused)
{
	return rg_free_procs_at_least(MaxConnections - rg_connection_slots() +
								  Max(unused, 0));
}

/*
 * Would admitting this login break the reservations?  Lock held.  "role"
 * is the login role's counter; "groups" its groups' counters whose member
 * counts are kept (NULL for others).  Logins waiting for a place hold a
 * slot each ("waiter": this login is one of them, its slot counted
 * already).  "limit" is the most slots core lets this login use
 * (rg_login_slot_limit: more than rg_connection_slots for a superuser).
 * On a refusal, *unused and *used say why, and *in_flight whether it was
 * backends role_guard does not count (core's free list) that took the
 * slots the unused places need.
 *
 * While any reservation is applied, a login that fills no unused place is
 * always checked, also when no place is unused: core checks the total only
 * later (InitPostgres, after this hook), against the process slots in use
 * at that later moment.  A session that role_guard let in past the slots
 * would get through core's check whenever a reserved session ended in
 * between, and then hold the place that session gives back to its
 * reservation; the next login of the reserved role would meet core's
 * refusal.  With unused places, role_guard's own count is not enough
 * either: logins in flight (authenticating, or refused and exiting) hold
 * process slots it does not count, so core's free list must also keep
 * them (rg_reserve_slots_kept).  What core may still refuse a reserved
 * login for is only a login in flight that role_guard has not decided yet,
 * and those end by themselves or are refused here.
 */
bool
rg_reserve_refuses(const RGCounter *role, RGCounter *const *groups,
				   int ngroups, bool waiter, int limit, int *unused,
				   int *used, bool *in_flight)
{
	const RGReserveState *rs = &rg_shared->reserve;
	int			slots = rg_connection_slots();
	int			after;
	int			i;

	*unused = rs->unused;
	*used = rg_shared->regular_sessions + rg_shared->login_queue.n;
	*in_flight = false;
	if (rs->places <= 0)
		return false;			/* no reservation: core's check alone */
	if (rg_has_unused(role, false) ||
		(role->members_tracked && rg_has_unused(role, true)))
		return false;
	for (i = 0; i < ngroups; i++)
		if (rg_has_unused(groups[i], true))
			return false;
	after = *used + (waiter ? 0 : 1);
	/* none unused: what core allows */
	if (*unused <= 0)
		return after > limit;
	/* unused places: only the slots they leave, as counted and as core sees */
	if (slots - after < *unused)
		return true;
	/* a waiter decided again is held to the count alone: see above */
	if (waiter)
		return false;
	*in_flight = !rg_reserve_slots_kept(*unused);
	return *in_flight;
}

/*
 * Bring the applied list up to date outside a login (the reaper at every
 * scan, the views before they read): resolve, then apply under the lock.
 */
void
rg_reserve_sync(void)
{
	RGReserveResolved resolved;

	if (!rg_reserve_resolve(&resolved))
		return;
	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	rg_reserve_apply(&resolved);
	LWLockRelease(rg_lock());
	pfree(resolved.oids);
}
