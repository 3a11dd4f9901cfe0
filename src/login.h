/*-------------------------------------------------------------------------
 *
 * login.h
 *	  The login path's own types, shared by auth.c (the steps, and waiting
 *	  for a place) and ending.c (eviction, for a login that waits).
 *	  Nothing else includes it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_LOGIN_H
#define RG_LOGIN_H

#include "libpq/libpq-be.h"

#include "role_guard.h"

/* What is known of a login before the lock is taken. */
typedef struct RGLogin
{
	Port	   *port;
	Oid			roleid;
	NameData	rolname;
	bool		rolsuper;
	bool		rolcreaterole;
	SockAddr	origin;			/* where it comes from, for the denial: the
								 * client, or a relaying backend's client */
	int			relay_pid;		/* that relaying backend, or 0 */
	const char *dbname;			/* NULL: physical replication */
	Oid			dboid;			/* its OID (step "database") */
	bool		exempt;			/* superuser over the Unix socket */
	bool		deny_host;		/* client listed in superuser_deny_hosts */
	int			slot_limit;		/* the most slots core lets it use */
	int			mode;
	const RGPolicy *policy;
	TimestampTz now;
	RGMembers	members;		/* its groups (names and SUPERUSER wanted) */
	RGReserveResolved reserve;	/* reservations to apply, if stale */
	uint64		ticket;			/* its place in line while it waits (or
								 * waited, before a reload), or 0 */
	bool		waiting;		/* registered as a waiter: its slot counted
								 * in RGShared.waiting */
	uint64		loaded;			/* the postmaster's policy hash when the
								 * login was checked against it (guc.c) */
	int32		wait_ms;		/* role_guard.login_waits for it (0: none) */
	int32		evict_ms;		/* role_guard.evict_idle for its sessions */
} RGLogin;

/* The counters a login is charged to, each pinned while it admits. */
typedef struct RGCharges
{
	RGCounter  *role;			/* connections of the role; its member count
								 * too if members_tracked */
	RGCounter  *db;				/* NULL without a database */
	RGCounter  *roledb;
	RGCounter **groups;			/* per group: its counter if its member
								 * count is kept, else NULL */
	const RGEntry **entries;	/* per group: its +group entry, or NULL;
								 * NULL if the policy has no +group entry */
	bool		full;			/* a counter it needs could not be made */
} RGCharges;

typedef enum RGVerdictKind
{
	RG_ADMIT,
	RG_ADMIT_UNCOUNTED,			/* a needed counter is missing; not refused */
	RG_REFUSE_HOST,
	RG_REFUSE_BUDGET,
	RG_REFUSE_RESERVED,			/* would take a slot reservations keep */
	RG_REFUSE_FULL,
	RG_REFUSE_GONE,				/* the client went away while it waited */
	RG_RETRY					/* a reload while it waited: decide again
								 * with the new settings */
} RGVerdictKind;

/* The entry a login was (or would have been) refused by. */
typedef struct RGViolation
{
	RGEntryKind kind;
	char		entry[RG_ENTRY_TEXT_LEN];
	int			limit;
	int			used;
	int			waiting;		/* earlier logins waiting for a place in it */
} RGViolation;

/* The most full entries a login may evict for (ending.c): one each is rare. */
#define RG_EVICT_FULL	4

/* A full entry, as eviction needs it. */
typedef struct RGFull
{
	RGCounter  *counter;		/* the counter that keeps its count */
	bool		member;			/* ... a +group's: its members' count */
	int			room;			/* its room after earlier waiters (<= 0) */
} RGFull;

typedef struct RGVerdict
{
	RGVerdictKind kind;
	bool		deny;			/* a superuser on a listed host */
	RGDenyReason deny_reason;	/* ... why the denial covers it */
	const RGEntry *worst;		/* the full budget with least room */
	RGCounter  *worst_counter;	/* ... the counter that keeps its count */
	int			worst_room;		/* ... its room (0 or less) */
	int			nfull;			/* budget entries that refuse it */
	RGFull		full[RG_EVICT_FULL];	/* ... the first RG_EVICT_FULL */
	RGViolation violation;		/* ... as reported */
	bool		reserved;		/* it would take a slot reservations keep */
	int			reserved_unused;	/* ... their unused places */
	int			slots_used;		/* ... and the slots in use */
	bool		in_flight;		/* ... logins in progress hold the rest */
	double		waited_s;		/* how long it waited (0: it did not) */
	bool		evicted;		/* it ended an idle session for a place */
} RGVerdict;

/* auth.c */
extern void rg_decide(const RGLogin *login, const RGCharges *charges,
					  RGVerdict *v);

/* ending.c: eviction */
extern int	rg_evict(const RGLogin *login, const RGVerdict *v, bool monitor,
					 RGEvent *ev);
extern bool rg_request_pending(int pid);
extern void rg_evict_monitor(const RGLogin *login, const RGVerdict *v);

#endif							/* RG_LOGIN_H */
