/*-------------------------------------------------------------------------
 *
 * authblock.c
 *	  Login blocks after failed authentications (role_guard.
 *	  auth_failure_limit): failures counted per (client address, role name
 *	  as the client sent it), and a pair that reached the limit refused in
 *	  the login hook, whatever the outcome of its authentication, until its
 *	  block ends.
 *
 * What counts.  ClientAuthentication_hook sees the status core's
 * authentication ended with.  STATUS_ERROR is a failure: a wrong password
 * (password, md5, SCRAM, whether the role exists or not), an expired or
 * missing password, and a failed LDAP, PAM, RADIUS, ident or certificate
 * check.  STATUS_EOF is a client that went away before it answered (libpq
 * does that when asked for a password it does not have): not a failure.
 * A pg_hba.conf "reject" line, a missing line and a missing client
 * certificate are refused by core with a FATAL before the hook runs, and
 * trust (and cert, once it passed) never fails: none of them counts.
 * Replication connections count like any other.  Unix-socket logins are
 * never counted nor blocked, except those a backend makes for its remote
 * client (dblink, postgres_fdw), which count as that client's (as for the
 * superuser denial); role_guard.auth_block_exempt_hosts are not either.  While a pair is blocked its logins are refused and their
 * outcome is not counted; a successful login of a pair that is not blocked
 * forgets its failures.  A superuser that role_guard refuses from a denied
 * host (deny.c) is refused as a failed authentication, and counted as one,
 * whatever its password: a right one must not forget the failures.
 *
 * The window slides: a pair is blocked at the failure that makes
 * auth_failure_limit of them within the last auth_failure_window, from the
 * times of its last RG_AUTH_RECENT failures (above that limit, in windows
 * that begin at a failure).  In monitor mode reaching the limit records
 * only when the block would end (would_until): the pair's failures are
 * not counted again until then, as under a block, but nothing is refused,
 * and a switch to enforce does not turn it into a block.
 *
 * Shared memory (this file owns it): one RGAuthShared, followed by its
 * bucket array and role_guard.max_auth_blocks RGAuthPair places.  A pair
 * is in one of three lists, oldest first: free places, pairs counting
 * failures, and blocked pairs.  When no place is free, the oldest pair
 * that only counts is forgotten (or a block that has ended); a pair whose
 * block is in force is forgotten only when every place holds one, the one
 * whose block began first.  So a spray of failures under new role names
 * pushes a blocked pair out only once every place holds a block, at a cost
 * of auth_failure_limit failures for each place.  Never an error, never a
 * refusal for a full table.
 *
 * Locking rules.  The table has its own LWLock (the third of the
 * "role_guard" tranche), never held together with another of role_guard's
 * locks, so failed logins do not hold up admissions.  Each field says what
 * protects it:
 *	[startup]	set once when shared memory is created;
 *	[lock]		read under the lock (shared is enough), written under it
 *				exclusively;
 *	[atomic]	a bucket's first place: written under the lock exclusively,
 *				read without it by a login's first look (a bucket that is
 *				empty holds no pair of the login's, and the login needs no
 *				lock at all; a pair entered a moment later is seen by the
 *				next login).
 * Nothing under the lock allocates, errors or does I/O.  A failure takes it
 * exclusively once; a successful login takes it shared once, only when its
 * bucket holds a pair.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "common/hashfn.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "role_guard.h"

/* A pair: the client's address (IPv4-mapped IPv6 as IPv4) and role name. */
typedef struct RGAuthKey
{
	uint8		family;			/* 4 or 6; 0 for a free place */
	uint8		addr[16];		/* IPv4 in the first 4 bytes, the rest 0 */
	NameData	rolname;		/* as the client sent it, zero-padded */
} RGAuthKey;

typedef enum RGAuthListKind
{
	RG_AUTH_FREE = 0,
	RG_AUTH_COUNTING,
	RG_AUTH_BLOCKED,
	RG_AUTH_NLISTS
} RGAuthListKind;

typedef struct RGAuthList
{
	int32		head;			/* [lock] the oldest place, -1: empty */
	int32		tail;			/* [lock] the newest */
} RGAuthList;

/*
 * The times of a pair's last failures kept: with auth_failure_limit up to
 * this, "limit failures within the window" is exact (a sliding window: the
 * limit-th most recent failure is within the window of the newest); above
 * it, failures are counted in windows that begin at a pair's first failure
 * after the last window passed.
 */
#define RG_AUTH_RECENT 16

typedef struct RGAuthPair
{
	RGAuthKey	key;			/* [lock] */
	uint32		hash;			/* [lock] of the key (rg_auth_hash) */
	int32		chain;			/* [lock] next place in its bucket, -1 */
	int32		prev;			/* [lock] neighbours in its list, -1 */
	int32		next;			/* [lock] */
	int32		list;			/* [lock] RGAuthListKind */
	int32		failures;		/* [lock] counted since first_failure; once
								 * blocked, those within the window then */
	TimestampTz first_failure;	/* [lock] start of its window */
	TimestampTz blocked_until;	/* [lock] 0: never blocked since counting */
	TimestampTz would_until;	/* [lock] monitor mode: the block it would be
								 * under ends then (never enforced), 0 */
	int32		nrecent;		/* [lock] times in recent[] */
	int32		newest;			/* [lock] recent[]'s newest */
	TimestampTz recent[RG_AUTH_RECENT];	/* [lock] its last failures, a ring */
} RGAuthPair;

typedef struct RGAuthShared
{
	LWLock	   *lock;			/* [startup] */
	int32		capacity;		/* [startup] places in pairs[] */
	uint32		mask;			/* [startup] buckets - 1 */
	uint32		seed;			/* [startup] secret start of every hash */
	RGAuthList	lists[RG_AUTH_NLISTS];	/* [lock] */
	/* then: pg_atomic_uint32 buckets[mask + 1], [atomic]: place + 1, 0 */
	/* then: RGAuthPair pairs[capacity] */
} RGAuthShared;

static RGAuthShared *rg_auth = NULL;
static pg_atomic_uint32 *rg_auth_buckets = NULL;
static RGAuthPair *rg_auth_pairs = NULL;

/* A login's pair, and what became of it (backend-local). */
typedef struct RGAuthLogin
{
	RGAuthKey	key;
	uint32		hash;
	SockAddr	origin;			/* the client counted (rg_auth_key) */
	TimestampTz now;
	TimestampTz until;			/* its block's end, when blocked */
	int32		failures;		/* the failures that started it */
	RGAuthKey	forgot;			/* a block in force forgotten for its room
								 * (family 0: none) */
} RGAuthLogin;

static uint32
rg_auth_buckets_for(int capacity)
{
	uint32		n = 1;

	while (n < (uint32) capacity * 2)
		n <<= 1;
	return n;
}

Size
rg_authblock_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(RGAuthShared));

	size = add_size(size, MAXALIGN(mul_size(rg_auth_buckets_for(rg_max_auth_blocks),
											sizeof(pg_atomic_uint32))));
	return add_size(size, mul_size(rg_max_auth_blocks, sizeof(RGAuthPair)));
}

/* Called from shmem.c's startup hook, AddinShmemInitLock held. */
void
rg_authblock_shmem_init(LWLock *lock)
{
	bool		found;
	uint32		nbuckets = rg_auth_buckets_for(rg_max_auth_blocks);
	char	   *base;
	int			i;

	base = ShmemInitStruct("role_guard auth blocks", rg_authblock_shmem_size(), &found);
	rg_auth = (RGAuthShared *) base;
	rg_auth_buckets = (pg_atomic_uint32 *) (base + MAXALIGN(sizeof(RGAuthShared)));
	rg_auth_pairs = (RGAuthPair *) ((char *) rg_auth_buckets +
									MAXALIGN(nbuckets * sizeof(pg_atomic_uint32)));
	if (found)
		return;
	memset(base, 0, rg_authblock_shmem_size());
	rg_auth->lock = lock;
	rg_auth->capacity = rg_max_auth_blocks;
	rg_auth->mask = nbuckets - 1;
	if (!pg_strong_random(&rg_auth->seed, sizeof(rg_auth->seed)))
		rg_auth->seed = (uint32) GetCurrentTimestamp() ^ (uint32) MyProcPid;
	for (i = 0; i < (int) nbuckets; i++)
		pg_atomic_init_u32(&rg_auth_buckets[i], 0);
	/* every place free, in order */
	for (i = 0; i < rg_max_auth_blocks; i++)
	{
		rg_auth_pairs[i].chain = -1;
		rg_auth_pairs[i].prev = i - 1;
		rg_auth_pairs[i].next = i + 1 < rg_max_auth_blocks ? i + 1 : -1;
	}
	rg_auth->lists[RG_AUTH_FREE].head = 0;
	rg_auth->lists[RG_AUTH_FREE].tail = rg_max_auth_blocks - 1;
	rg_auth->lists[RG_AUTH_COUNTING].head = rg_auth->lists[RG_AUTH_COUNTING].tail = -1;
	rg_auth->lists[RG_AUTH_BLOCKED].head = rg_auth->lists[RG_AUTH_BLOCKED].tail = -1;
}

/*
 * A login's pair: false for the Unix socket, which is never counted nor
 * blocked, unless the login is one a backend of this server makes for its
 * own remote client (dblink, postgres_fdw: deny.c's rg_login_origin), which
 * counts as that client's, as for the superuser denial: otherwise guesses
 * relayed through such a session would never be counted.  *origin is the
 * address counted.  Every login with the limit on comes here, so it is one pass:
 * the name is copied and hashed together (FNV-1a from the table's secret
 * seed, so that no client can choose names that share a bucket), then
 * the address's words are mixed in.  The name is NUL-terminated, not
 * padded (keys are compared with strcmp).
 */
static bool
rg_auth_key(const Port *port, RGAuthKey *key, uint32 *hash, SockAddr *origin)
{
	const char *s = port->user_name;
	char	   *d = NameStr(key->rolname);
	uint32		h = rg_auth->seed;
	uint32		word;
	int			family;
	int			relay_pid;
	int			i;

	memset(key->addr, 0, sizeof(key->addr));
	rg_login_origin(port, origin, &relay_pid);
	if (!rg_client_address(origin, &family, key->addr))
		return false;
	key->family = (uint8) family;
	for (i = 0; i < NAMEDATALEN - 1 && s[i] != '\0'; i++)
	{
		d[i] = s[i];
		h = (h ^ (uint8) s[i]) * 16777619;
	}
	d[i] = '\0';
	for (i = 0; i < (family == 4 ? 4 : 16); i += 4)
	{
		memcpy(&word, key->addr + i, sizeof(word));
		h = hash_combine(h, murmurhash32(word));
	}
	*hash = murmurhash32(h ^ (uint32) family);
	return true;
}

static inline pg_atomic_uint32 *
rg_auth_bucket(uint32 hash)
{
	return &rg_auth_buckets[hash & rg_auth->mask];
}

static inline bool
rg_auth_key_equal(const RGAuthKey *a, const RGAuthKey *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0 &&
		strcmp(NameStr(a->rolname), NameStr(b->rolname)) == 0;
}

/* The place of a pair, or -1.  Lock held (shared is enough). */
static int32
rg_auth_find(const RGAuthKey *key, uint32 hash)
{
	int32		place = (int32) pg_atomic_read_u32(rg_auth_bucket(hash)) - 1;

	while (place >= 0)
	{
		const RGAuthPair *p = &rg_auth_pairs[place];

		if (p->hash == hash && rg_auth_key_equal(&p->key, key))
			return place;
		place = p->chain;
	}
	return -1;
}

/* Take a place out of its list.  Lock held exclusively. */
static void
rg_auth_unlink(int32 place)
{
	RGAuthPair *p = &rg_auth_pairs[place];
	RGAuthList *l = &rg_auth->lists[p->list];

	if (p->prev >= 0)
		rg_auth_pairs[p->prev].next = p->next;
	else
		l->head = p->next;
	if (p->next >= 0)
		rg_auth_pairs[p->next].prev = p->prev;
	else
		l->tail = p->prev;
	p->prev = p->next = -1;
}

/* Put a place at the end (the newest) of a list.  Lock held exclusively. */
static void
rg_auth_append(int32 place, RGAuthListKind kind)
{
	RGAuthPair *p = &rg_auth_pairs[place];
	RGAuthList *l = &rg_auth->lists[kind];

	p->list = kind;
	p->next = -1;
	p->prev = l->tail;
	if (l->tail >= 0)
		rg_auth_pairs[l->tail].next = place;
	else
		l->head = place;
	l->tail = place;
}

static void
rg_auth_move(int32 place, RGAuthListKind kind)
{
	rg_auth_unlink(place);
	rg_auth_append(place, kind);
}

/* A pair counts from nothing: no failure, no block.  Exclusive. */
static void
rg_auth_restart(RGAuthPair *p)
{
	p->failures = 0;
	p->nrecent = 0;
	p->newest = 0;
	p->first_failure = p->blocked_until = p->would_until = 0;
}

/* Forget a pair: out of its bucket and list, its place free.  Exclusive. */
static void
rg_auth_forget(int32 place)
{
	RGAuthPair *p = &rg_auth_pairs[place];
	pg_atomic_uint32 *bucket = rg_auth_bucket(p->hash);
	int32		at = (int32) pg_atomic_read_u32(bucket) - 1;

	if (at == place)
		pg_atomic_write_u32(bucket, (uint32) (p->chain + 1));
	else
	{
		while (rg_auth_pairs[at].chain != place)
			at = rg_auth_pairs[at].chain;
		rg_auth_pairs[at].chain = p->chain;
	}
	rg_auth_unlink(place);
	memset(&p->key, 0, sizeof(p->key));
	p->chain = -1;
	rg_auth_restart(p);
	rg_auth_append(place, RG_AUTH_FREE);
}

/*
 * A place for a new pair: a free one, else the oldest pair that only
 * counts (or whose block has ended), else the block that began first (its
 * key left in a->forgot, for a LOG line).  Not the newest block: a guesser
 * whose own block is the newest would end it with one failure under a new
 * name; the oldest costs it a failure for every place, limit times, to
 * reach its own block again.  Lock held exclusively.
 */
static int32
rg_auth_take_place(RGAuthLogin *a)
{
	const RGAuthList *lists = rg_auth->lists;
	int32		victim;

	if (lists[RG_AUTH_FREE].head >= 0)
		return lists[RG_AUTH_FREE].head;
	victim = lists[RG_AUTH_BLOCKED].head;
	if (victim < 0 || rg_auth_pairs[victim].blocked_until > a->now)
	{
		if (lists[RG_AUTH_COUNTING].head >= 0)
			victim = lists[RG_AUTH_COUNTING].head;
		else
			a->forgot = rg_auth_pairs[victim].key;
	}
	rg_auth_forget(victim);
	return victim;
}

/* Enter a new pair, counting.  Lock held exclusively. */
static int32
rg_auth_enter(RGAuthLogin *a)
{
	int32		place = rg_auth_take_place(a);
	RGAuthPair *p = &rg_auth_pairs[place];
	pg_atomic_uint32 *bucket = rg_auth_bucket(a->hash);

	memset(&p->key, 0, sizeof(p->key));
	p->key.family = a->key.family;
	memcpy(p->key.addr, a->key.addr, sizeof(p->key.addr));
	strlcpy(NameStr(p->key.rolname), NameStr(a->key.rolname), NAMEDATALEN);
	p->hash = a->hash;
	rg_auth_restart(p);
	p->chain = (int32) pg_atomic_read_u32(bucket) - 1;
	pg_atomic_write_u32(bucket, (uint32) place + 1);
	rg_auth_move(place, RG_AUTH_COUNTING);
	return place;
}

typedef enum RGAuthOutcome
{
	RG_AUTH_NONE,				/* no pair, or one with nothing in force */
	RG_AUTH_COUNTED,			/* a failure counted */
	RG_AUTH_STARTED,			/* ... that started a block */
	RG_AUTH_IN_FORCE			/* the pair is blocked */
} RGAuthOutcome;

/*
 * A pair's failures within the window that ends at "now", and the first of
 * them (*first, when there is one): from the times kept while the limit is
 * at most RG_AUTH_RECENT, else those counted since first_failure.  Lock
 * held (shared is enough).
 */
static int32
rg_auth_in_window(const RGAuthPair *p, TimestampTz now, TimestampTz *first)
{
	int64		window = (int64) rg_auth_failure_window * 1000;
	int32		n = 0;
	int			i;

	if (rg_auth_failure_limit > RG_AUTH_RECENT)
	{
		if (p->failures == 0 || now - p->first_failure > window)
			return 0;
		*first = p->first_failure;
		return p->failures;
	}
	for (i = 0; i < p->nrecent; i++)
	{
		TimestampTz t = p->recent[(p->newest - i + RG_AUTH_RECENT) % RG_AUTH_RECENT];

		if (now - t > window)
			break;
		*first = t;
		n++;
	}
	return n;
}

/*
 * Count one failure of a login's pair.  A pair blocked now is not counted
 * (its logins are refused whatever they do), nor, in monitor mode, one
 * that would be; a block that ended, or one that was only logged, starts
 * the count again.  With "enforce" off (monitor mode) the limit starts no
 * block, only the time it would end.  Lock held exclusively.
 */
static RGAuthOutcome
rg_auth_count_failure(RGAuthLogin *a, bool enforce)
{
	int32		place = rg_auth_find(&a->key, a->hash);
	int64		window = (int64) rg_auth_failure_window * 1000;
	TimestampTz first = a->now;
	RGAuthPair *p;

	if (place < 0)
		place = rg_auth_enter(a);
	p = &rg_auth_pairs[place];
	if (p->blocked_until > a->now || (!enforce && p->would_until > a->now))
	{
		a->until = Max(p->blocked_until, p->would_until);
		return RG_AUTH_IN_FORCE;
	}
	if (p->blocked_until != 0 || p->would_until != 0)
		rg_auth_restart(p);
	/* the times of the last failures, and the count since first_failure */
	p->newest = (p->newest + 1) % RG_AUTH_RECENT;
	p->recent[p->newest] = a->now;
	p->nrecent = Min(p->nrecent + 1, RG_AUTH_RECENT);
	if (p->failures == 0 || a->now - p->first_failure > window)
	{
		p->failures = 0;
		p->first_failure = a->now;
	}
	p->failures++;
	a->failures = rg_auth_in_window(p, a->now, &first);
	if (a->failures < rg_auth_failure_limit)
	{
		rg_auth_move(place, RG_AUTH_COUNTING);
		return RG_AUTH_COUNTED;
	}
	/* what started it, shown while it lasts */
	p->failures = a->failures;
	p->first_failure = first;
	a->until = a->now + (int64) rg_auth_block_time * 1000;
	if (!enforce)
	{
		p->would_until = a->until;
		rg_auth_move(place, RG_AUTH_COUNTING);
	}
	else
	{
		p->blocked_until = a->until;
		rg_auth_move(place, RG_AUTH_BLOCKED);
	}
	return RG_AUTH_STARTED;
}

/*
 * Is a login's pair blocked now (with "monitor", or would it be)?  Sets
 * a->until.  RG_AUTH_COUNTED: it has failures but no block.  Takes the
 * lock shared, and only when the pair's bucket holds a pair.
 */
static RGAuthOutcome
rg_auth_state(RGAuthLogin *a, bool monitor)
{
	RGAuthOutcome state = RG_AUTH_NONE;
	int32		place;

	if (pg_atomic_read_u32(rg_auth_bucket(a->hash)) == 0)
		return RG_AUTH_NONE;
	a->now = GetCurrentTimestamp();
	LWLockAcquire(rg_auth->lock, LW_SHARED);
	place = rg_auth_find(&a->key, a->hash);
	if (place >= 0)
	{
		const RGAuthPair *p = &rg_auth_pairs[place];
		TimestampTz until = monitor ? Max(p->blocked_until, p->would_until) :
			p->blocked_until;

		if (until > a->now)
		{
			state = RG_AUTH_IN_FORCE;
			a->until = until;
		}
		else if (p->failures > 0)
			state = RG_AUTH_COUNTED;	/* counting, or a block that ended */
	}
	LWLockRelease(rg_auth->lock);
	return state;
}

/*
 * A successful login forgets its pair's failures, or its block that ended
 * (never a block in force).
 */
static void
rg_auth_forget_failures(RGAuthLogin *a)
{
	int32		place;

	LWLockAcquire(rg_auth->lock, LW_EXCLUSIVE);
	place = rg_auth_find(&a->key, a->hash);
	if (place >= 0 && rg_auth_pairs[place].blocked_until <= a->now)
		rg_auth_forget(place);
	LWLockRelease(rg_auth->lock);
}

/*
 * A role name as the client sent it (any bytes but NUL), made safe to show
 * in a view or an event: as it is when it is valid in "encoding" and has no
 * control character, else with every byte outside printable ASCII written
 * as \xNN.  Otherwise a client could put bytes in role_guard_auth_blocks or
 * role_guard_events that fail the view's encoding conversion.
 */
/* Is a name shown as it is (valid in "encoding", no control character)? */
static bool
rg_auth_name_plain(const char *name, int encoding)
{
	size_t		len = strlen(name);
	size_t		i;

	if (!pg_verify_mbstr(encoding, name, (int) len, true))
		return false;
	for (i = 0; i < len; i++)
	{
		if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
			return false;
	}
	return true;
}

void
rg_auth_name_text(const char *name, int encoding, char *out, size_t outlen)
{
	size_t		len = strlen(name);
	size_t		pos = 0;
	size_t		i;

	if (rg_auth_name_plain(name, encoding))
	{
		strlcpy(out, name, outlen);
		return;
	}
	/* a backslash escaped too, so that the text reads back one way */
	for (i = 0; i < len && pos + 4 < outlen; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[pos++] = (char) c;
		else
			pos += snprintf(out + pos, outlen - pos, "\\x%02x", c);
	}
	out[Min(pos, outlen - 1)] = '\0';
}

/*
 * The bytes behind a name as rg_auth_name_text shows it: each \xNN is the
 * byte NN, the rest as it is; at most NAMEDATALEN - 1 bytes, like a key.
 */
static void
rg_auth_name_raw(const char *text, char *raw)
{
	size_t		pos = 0;

	while (*text != '\0' && pos < NAMEDATALEN - 1)
	{
		if (text[0] == '\\' && text[1] == 'x' &&
			isxdigit((unsigned char) text[2]) && isxdigit((unsigned char) text[3]))
		{
			char		hex[3] = {text[2], text[3], '\0'};
			char		c = (char) strtol(hex, NULL, 16);

			if (c == '\0')
			{
				/* no name has a NUL, and no key is empty: nothing matches */
				pos = 0;
				break;
			}
			raw[pos++] = c;
			text += 4;
		}
		else
			raw[pos++] = *text++;
	}
	raw[pos] = '\0';
}

/* The pair's address as text (IPv4-mapped IPv6 as IPv4), for messages. */
static void
rg_auth_host(const RGAuthKey *key, char *buf, size_t len)
{
	if (pg_inet_net_ntop(key->family == 4 ? PGSQL_AF_INET : PGSQL_AF_INET6,
						 key->addr, key->family == 4 ? 32 : 128, buf, len) == NULL)
		strlcpy(buf, "?", len);
}

static bool
rg_auth_exempt(const RGAuthKey *key)
{
	return rg_auth_exempt_hosts != NULL &&
		(rg_auth_exempt_hosts->all || rg_auth_exempt_hosts->nentries > 0) &&
		rg_hosts_match(rg_auth_exempt_hosts, key->family, key->addr) != NULL;
}

/*
 * Refuse a login of a blocked pair: the same FATAL whatever its
 * authentication did (the server log alone says which).
 */
static void
rg_auth_refuse(const RGAuthLogin *a, bool authenticated)
{
	char		host[64];
	char		detail[256];

	rg_auth_host(&a->key, host, sizeof(host));
	snprintf(detail, sizeof(detail),
			 "role_guard refuses logins of this role from this host until %s, after too many failed authentications.",
			 timestamptz_to_str(a->until));
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("too many failed logins for role \"%s\" from host \"%s\"",
					NameStr(a->key.rolname), host),
			 errdetail("%s", detail),
			 errdetail_log("%s The authentication itself %s.", detail,
						   authenticated ? "succeeded" : "failed"),
			 errhint("An administrator can end the block with role_guard_unblock().")));
}

/* usage.auth_blocked: charge the block to the role, if it exists. */
static void
rg_auth_count_role(const RGAuthKey *key, bool monitor)
{
	HeapTuple	tup;
	Oid			roleid;
	NameData	name;
	bool		rolsuper;
	RGCounter  *c;

	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(NameStr(key->rolname)));
	if (!HeapTupleIsValid(tup))
		return;
	roleid = ((Form_pg_authid) GETSTRUCT(tup))->oid;
	rolsuper = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper;
	namestrcpy(&name, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
	ReleaseSysCache(tup);

	LWLockAcquire(rg_lock(), LW_EXCLUSIVE);
	c = rg_counter_enter(RG_COUNTER_ROLE, roleid, InvalidOid);
	if (c != NULL)
	{
		c->rolname = name;
		c->rolsuper = rolsuper;
		rg_outcome_count(&c->stats.auth_blocked, monitor);
		rg_counter_unpin(c);
	}
	LWLockRelease(rg_lock());
}

/* A block began (or in monitor mode, would have): event, LOG, count. */
static void
rg_auth_report_start(const Port *port, const RGAuthLogin *a, bool monitor)
{
	RGEvent		ev;
	char		host[64];

	rg_auth_host(&a->key, host, sizeof(host));
	rg_event_init(&ev, monitor ? RG_EVENT_WOULD_BLOCK : RG_EVENT_AUTH_BLOCKED);
	ev.pid = MyProcPid;
	/* events are read from databases of any encoding: UTF-8 or escaped */
	rg_auth_name_text(NameStr(a->key.rolname), PG_UTF8, NameStr(ev.rolname),
					  NAMEDATALEN);
	if (port->database_name)
		strlcpy(NameStr(ev.datname), port->database_name, NAMEDATALEN);
	rg_event_client(&ev, &a->origin);
	if (port->application_name)
		strlcpy(ev.application_name, port->application_name, sizeof(ev.application_name));
	snprintf(ev.detail, sizeof(ev.detail),
			 "%d failed authentications within %g s (role_guard.auth_failure_limit = %d); logins of this role from this host %s refused until %s.",
			 a->failures, rg_auth_failure_window / 1000.0, rg_auth_failure_limit,
			 monitor ? "would be" : "are", timestamptz_to_str(a->until));
	rg_event_add(&ev);
	ereport(LOG,
			(errmsg("role_guard: logins of role \"%s\" from host \"%s\" %s",
					NameStr(a->key.rolname), host,
					monitor ? "would be blocked" : "blocked"),
			 errdetail("%s", ev.detail)));
	rg_auth_count_role(&a->key, monitor);
}

/* Every place held a block in force: one was forgotten for a new pair. */
static void
rg_auth_report_forgotten(const RGAuthKey *forgot)
{
	char		host[64];

	rg_auth_host(forgot, host, sizeof(host));
	ereport(LOG,
			(errmsg("role_guard: login block of role \"%s\" from host \"%s\" forgotten: every place of the table holds a block",
					NameStr(forgot->rolname), host),
			 errhint("Increase role_guard.max_auth_blocks (now %d).",
					 rg_max_auth_blocks)));
}

/*
 * A failed authentication, or one that role_guard refuses as if it had
 * failed (a superuser denied from this host, "authenticated"): count it;
 * refuse if the pair is blocked.
 */
static void
rg_auth_failed(const Port *port, RGAuthLogin *a, bool enforce,
			   bool authenticated)
{
	RGAuthOutcome outcome;

	if (rg_auth_exempt(&a->key))
		return;
	a->now = GetCurrentTimestamp();
	a->forgot.family = 0;
	LWLockAcquire(rg_auth->lock, LW_EXCLUSIVE);
	outcome = rg_auth_count_failure(a, enforce);
	LWLockRelease(rg_auth->lock);

	if (a->forgot.family != 0)
		rg_auth_report_forgotten(&a->forgot);

	if (outcome == RG_AUTH_STARTED)
		rg_auth_report_start(port, a, !enforce);
	else if (outcome == RG_AUTH_IN_FORCE && enforce)
		rg_auth_refuse(a, authenticated);
	/* else core reports the failure, or the login hook the denial */
}

/*
 * A successful authentication: refused if the pair is blocked now, unless
 * the SCRAM final message went out before the block began (authwire.c:
 * that client knows already, and its login was decided then).  A final
 * message held back for a block that has ended since (role_guard_unblock,
 * a reload) goes out if the login is admitted.
 */
static void
rg_auth_succeeded(RGAuthLogin *a, bool enforce)
{
	RGAuthWireState wire = rg_authwire_state();
	RGAuthOutcome state;

	state = rg_auth_state(a, !enforce);
	if (state == RG_AUTH_IN_FORCE && enforce && wire != RG_WIRE_SENT &&
		!rg_auth_exempt(&a->key))
		rg_auth_refuse(a, true);
	if (state == RG_AUTH_COUNTED)
		rg_auth_forget_failures(a);
}

/*
 * The login hook's one call, while role_guard.auth_failure_limit is above
 * 0: count a failure, refuse a blocked pair.  No lock held.
 */
void
rg_authblock_login(Port *port, int status)
{
	RGAuthLogin a;
	bool		enforce = rg_mode == RG_MODE_ENFORCE;

	rg_authwire_done();
	if (status == STATUS_EOF || rg_mode == RG_MODE_OFF ||
		!rg_auth_key(port, &a.key, &a.hash, &a.origin))
		return;
	/*
	 * A superuser denied from this host is refused as a failed
	 * authentication (auth.c) when its method proves a secret, and counts
	 * as one: otherwise a right password would forget the failures that a
	 * wrong one adds to, and a denied host could tell them apart by when
	 * its block begins.  In monitor mode too, where the denial is only
	 * logged: the block that enforce would start is then recorded as
	 * would_block.  With a method that proves none (trust, peer, cert...)
	 * the denial is told as it is and is no failed authentication: it is
	 * refused with its own message every time, never turned into a block.
	 */
	if (status == STATUS_OK &&
		!(rg_method_proves_secret(port) && rg_deny_login_covered(port)))
		rg_auth_succeeded(&a, enforce);
	else
		rg_auth_failed(port, &a, enforce, status == STATUS_OK);
}

/*
 * Will this login be refused for a block whatever its authentication does?
 * Asked by authwire.c before the SCRAM final message goes out.  No lock
 * held; takes it shared only when the pair's bucket holds a pair.
 */
bool
rg_authblock_refuses(const Port *port)
{
	RGAuthLogin a;

	if (rg_auth_failure_limit <= 0 || rg_mode != RG_MODE_ENFORCE ||
		!rg_auth_key(port, &a.key, &a.hash, &a.origin))
		return false;
	if (rg_auth_state(&a, false) != RG_AUTH_IN_FORCE || rg_auth_exempt(&a.key))
		return false;
	return true;
}

/*
 * Copy the pairs with failures in their window or a block in force (in
 * monitor mode, or one they would be under), for role_guard_auth_blocks: a palloc'd array, *n rows, sized for what is
 * there (not for the table).  The lock is held shared for RG_AUTH_PART
 * places at a time, so a scrape of a large table never holds up failed
 * logins for long; nothing is allocated under it.
 */
#define RG_AUTH_PART 512

RGAuthRow *
rg_authblock_rows(int *n)
{
	int			capacity = rg_auth->capacity;
	int			room = Min(RG_AUTH_PART, capacity);
	RGAuthRow  *rows = palloc0(sizeof(RGAuthRow) * Max(room, 1));
	TimestampTz now = GetCurrentTimestamp();
	bool		monitor = rg_mode == RG_MODE_MONITOR;
	int			place = 0;

	*n = 0;
	while (place < capacity)
	{
		int			end = Min(place + RG_AUTH_PART, capacity);

		/* room for a whole part more, made before the lock */
		if (room - *n < end - place)
		{
			room = Min(Max(*n + (end - place), room * 2), capacity);
			rows = repalloc(rows, sizeof(RGAuthRow) * room);
			memset(&rows[*n], 0, sizeof(RGAuthRow) * (room - *n));
		}
		LWLockAcquire(rg_auth->lock, LW_SHARED);
		for (; place < end; place++)
		{
			const RGAuthPair *p = &rg_auth_pairs[place];
			RGAuthRow  *r = &rows[*n];
			TimestampTz until = monitor ? Max(p->blocked_until, p->would_until) :
				p->blocked_until;
			bool		blocked = until > now;
			TimestampTz first = 0;
			int32		failures;

			if (p->key.family == 0 || (until != 0 && !blocked))
				continue;
			failures = blocked ? p->failures : rg_auth_in_window(p, now, &first);
			if (failures == 0)
				continue;
			r->family = p->key.family;
			memcpy(r->addr, p->key.addr, sizeof(r->addr));
			r->rolname = p->key.rolname;
			r->failures = failures;
			r->first_failure = blocked ? p->first_failure : first;
			r->blocked_until = blocked ? until : 0;
			(*n)++;
		}
		LWLockRelease(rg_auth->lock);
	}
	return rows;
}

/*
 * role_guard_unblock(): forget every pair whose address is in "hosts" (a
 * one-entry list from rg_hosts_parse; NULL: any) and whose role name is
 * "rolname" (NULL: any).  Returns how many blocks in force it ended.
 */
int
rg_authblock_unblock(const RGHostList *hosts, const char *rolname)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ended = 0;
	int			place;
	char		raw[NAMEDATALEN];
	int			encoding = GetDatabaseEncoding();

	/* a name shown escaped (rg_auth_name_text) is found by that text too */
	if (rolname)
		rg_auth_name_raw(rolname, raw);
	LWLockAcquire(rg_auth->lock, LW_EXCLUSIVE);
	for (place = 0; place < rg_auth->capacity; place++)
	{
		RGAuthPair *p = &rg_auth_pairs[place];

		if (p->key.family == 0 ||
			(hosts && rg_hosts_match(hosts, p->key.family, p->key.addr) == NULL) ||
			(rolname && strcmp(NameStr(p->key.rolname), rolname) != 0 &&
			 (strcmp(NameStr(p->key.rolname), raw) != 0 ||
			  rg_auth_name_plain(NameStr(p->key.rolname), encoding))))
			continue;
		if (p->blocked_until > now)
			ended++;
		rg_auth_forget(place);
	}
	LWLockRelease(rg_auth->lock);
	return ended;
}
