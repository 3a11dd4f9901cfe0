/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  The parsed form of role_guard's list-valued settings.
 *
 * policy.c turns the text of role_guard.budgets (and, with the same
 * tokenizer, the timeout lists) into one flat, self-contained block: an
 * array of entries followed by an open-addressing hash of entry indexes.
 * The block is allocated in a single call of the caller's allocator, so the
 * GUC machinery can own it as a check hook's "extra" and free() it, and the
 * login path can look entries up in O(1) without parsing or allocating.
 *
 * Nothing here calls into the backend (no palloc, no elog, no GUC code):
 * the parsers can be linked alone into a fuzzing harness.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_POLICY_H
#define RG_POLICY_H

/* Kinds of entry, in the order used to break ties between full budgets. */
typedef enum RGEntryKind
{
	RG_ENTRY_ROLE = 0,			/* name=N */
	RG_ENTRY_DEFAULT,			/* *=N */
	RG_ENTRY_GROUP,				/* +group=N */
	RG_ENTRY_DATABASE,			/* @db=N */
	RG_ENTRY_ROLE_DATABASE		/* name@db=N */
} RGEntryKind;

/* Which list a text is: decides the value syntax and the kinds allowed. */
typedef enum RGPolicyType
{
	RG_POLICY_BUDGETS,			/* values are session counts >= 0 */
	RG_POLICY_TIMEOUTS,			/* values are durations, kept in ms; 0 = never */
	RG_POLICY_RESERVATIONS		/* name=N and +group=N only, N >= 0 */
} RGPolicyType;

typedef struct RGEntry
{
	int32		kind;			/* RGEntryKind */
	int32		value;			/* sessions, or milliseconds */
	char		name[NAMEDATALEN];	/* role or group; "" for * and @db */
	char		db[NAMEDATALEN];	/* database; "" unless @db or name@db */
} RGEntry;

typedef struct RGPolicy
{
	int32		nentries;
	int32		default_index;	/* index of the "*" entry, or -1 */
	int32		ngroups;		/* number of +group entries */
	uint32		hashmask;		/* hash slots - 1; slots follow the entries */
	RGEntry		entries[FLEXIBLE_ARRAY_MEMBER];
} RGPolicy;

typedef void *(*RGAllocFunc) (size_t size);
typedef void (*RGFreeFunc) (void *ptr);

/*
 * Parse "text" as a list of the given type.  Returns a block obtained from
 * "alloc" (NULL text or an empty list give a policy with no entries), or
 * NULL with a one-sentence explanation naming the bad entry in errbuf.
 * Returns NULL with errbuf[0] == '\0' if "alloc" failed.
 */
extern RGPolicy *rg_policy_parse(RGPolicyType type, const char *text,
								 RGAllocFunc alloc, RGFreeFunc dealloc,
								 char *errbuf, size_t errlen);

/* O(1) look-up of an entry; "name" and "db" may be NULL for "". */
extern const RGEntry *rg_policy_lookup(const RGPolicy *policy, int kind,
									   const char *name, const char *db);

/* The default ("*") entry, or NULL. */
static inline const RGEntry *
rg_policy_default(const RGPolicy *policy)
{
	if (policy == NULL || policy->default_index < 0)
		return NULL;
	return &policy->entries[policy->default_index];
}

/*
 * Write an entry's left side ("app", "*", "+readers", "@limdb",
 * "app@limdb"; names double-quoted when they need it) into buf.
 */
extern void rg_entry_format(const RGEntry *entry, char *buf, size_t len);

/* Size of buffer that always holds rg_entry_format()'s output. */
#define RG_ENTRY_TEXT_LEN	(2 * (2 * NAMEDATALEN + 2) + 4)

/*
 * role_guard.superuser_deny_hosts: addresses and CIDR blocks, or "all".
 * IPv4 entries are kept as 4 bytes, IPv6 as 16; host bits past the prefix
 * are cleared at parse time, so matching is a masked byte compare.
 */
typedef struct RGHostEntry
{
	uint8		family;			/* 4 or 6 */
	uint8		bits;			/* prefix length */
	uint8		addr[16];
	char		text[64];		/* as written, trimmed (for messages) */
} RGHostEntry;

typedef struct RGHostList
{
	bool		all;			/* "all": every TCP client */
	int32		nentries;
	RGHostEntry entries[FLEXIBLE_ARRAY_MEMBER];
} RGHostList;

extern RGHostList *rg_hosts_parse(const char *text, RGAllocFunc alloc,
								  char *errbuf, size_t errlen);

/*
 * Does an address match the list?  family 4 with 4 bytes or 6 with 16;
 * callers turn IPv4-mapped IPv6 addresses into IPv4 first.  Returns the
 * matching entry or NULL.  No allocation.
 */
extern const RGHostEntry *rg_hosts_match(const RGHostList *list, int family,
										 const uint8 *addr);

#endif							/* RG_POLICY_H */
