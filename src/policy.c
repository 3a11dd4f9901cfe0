/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Parsers for role_guard's list-valued settings, and O(1) look-up.
 *
 * Grammar (README.md, Settings): comma-separated ENTRY=VALUE, white space allowed
 * around every token.  ENTRY is one of
 *		name		*		+name		@name		name@name
 * where a name follows SQL identifier rules: "Quoted" (with "" for a
 * double quote) is kept as written; unquoted is [A-Za-z_\200-\377] followed
 * by [A-Za-z0-9_$\200-\377], ASCII letters folded to lower case.  A name
 * is at most NAMEDATALEN-1 bytes: a longer one could never match a role or
 * database, so it is refused rather than silently truncated.
 *
 * Budgets: VALUE is an integer 0..INT_MAX.  Timeouts: VALUE is a number
 * with an optional unit us, ms, s, min, h, d (seconds when bare), kept in
 * milliseconds 0..INT_MAX; only name, +name and * are allowed.
 *
 * The result is one block from the caller's allocator (see policy.h).  No
 * backend function is called here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

/* Longest piece of an entry quoted back in an error message. */
#define RG_ERR_ENTRY_MAX	80

typedef struct RGParser
{
	RGPolicyType type;
	const char *text;			/* whole input */
	const char *p;				/* cursor */
	const char *entry_start;	/* start of the current entry */
	char	   *errbuf;
	size_t		errlen;
} RGParser;

static inline int32 *
policy_slots(const RGPolicy *policy)
{
	return (int32 *) &policy->entries[policy->nentries];
}

static uint32
entry_hash(int kind, const char *name, const char *db)
{
	/* FNV-1a over kind, name, NUL, db */
	uint32		h = 2166136261u;
	const unsigned char *s;

	h = (h ^ (uint32) kind) * 16777619u;
	for (s = (const unsigned char *) name; *s; s++)
		h = (h ^ *s) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (s = (const unsigned char *) db; *s; s++)
		h = (h ^ *s) * 16777619u;
	return h;
}

static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void
skip_space(RGParser *ps)
{
	while (is_space(*ps->p))
		ps->p++;
}

/*
 * Copy the current entry's raw text (up to the next comma outside quotes,
 * trimmed, shortened with "..." if long) into buf, for error messages.
 */
static void
entry_text(RGParser *ps, char *buf, size_t len)
{
	const char *s = ps->entry_start;
	const char *e = s;
	bool		inquote = false;
	size_t		n;

	while (*e && (inquote || *e != ','))
	{
		if (*e == '"')
			inquote = !inquote;
		e++;
	}
	while (e > s && is_space(e[-1]))
		e--;
	n = (size_t) (e - s);
	if (n > RG_ERR_ENTRY_MAX)
	{
		snprintf(buf, len, "%.*s...", RG_ERR_ENTRY_MAX, s);
		return;
	}
	snprintf(buf, len, "%.*s", (int) n, s);
}

/* Report "Entry "<text>" <message>" and return false. */
static bool pg_attribute_printf(2, 3)
entry_error(RGParser *ps, const char *fmt,...)
{
	char		entry[RG_ERR_ENTRY_MAX + 8];
	char		msg[256];
	va_list		ap;

	entry_text(ps, entry, sizeof(entry));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->errbuf, ps->errlen, "Entry \"%s\" %s", entry, msg);
	return false;
}

static inline bool
ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static inline bool
ident_cont(unsigned char c)
{
	return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* Parse one name at the cursor into out[NAMEDATALEN]. */
static bool
parse_name(RGParser *ps, char *out)
{
	size_t		n = 0;

	if (*ps->p == '"')
	{
		ps->p++;
		for (;;)
		{
			if (*ps->p == '\0')
				return entry_error(ps, "has an unterminated quoted name.");
			if (*ps->p == '"')
			{
				if (ps->p[1] != '"')
					break;
				ps->p++;		/* "" stands for one double quote */
			}
			if (n >= NAMEDATALEN - 1)
				return entry_error(ps, "has a name longer than %d bytes.",
								   NAMEDATALEN - 1);
			out[n++] = *ps->p++;
		}
		ps->p++;				/* closing quote */
		if (n == 0)
			return entry_error(ps, "has an empty quoted name.");
		out[n] = '\0';
		return true;
	}

	if (!ident_start((unsigned char) *ps->p))
	{
		if (*ps->p == '=' || *ps->p == ',' || *ps->p == '\0' || *ps->p == '@' ||
			is_space(*ps->p))
			return entry_error(ps, "has an empty name.");
		return entry_error(ps, "has an invalid name: unexpected character \"%c\" (quote names that are not plain identifiers).",
						   *ps->p);
	}
	while (ident_cont((unsigned char) *ps->p))
	{
		char		c = *ps->p++;

		if (n >= NAMEDATALEN - 1)
			return entry_error(ps, "has a name longer than %d bytes.",
							   NAMEDATALEN - 1);
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		out[n++] = c;
	}
	out[n] = '\0';
	return true;
}

/* Parse a session count: digits only. */
static bool
parse_count(RGParser *ps, const char *v, size_t len, int32 *out)
{
	int64		val = 0;
	size_t		i = 0;

	if (len > 0 && v[0] == '-')
	{
		/* "-0" is 0, as in durations; anything below it is refused */
		bool		zero = len > 1;

		for (i = 1; i < len; i++)
		{
			if (v[i] < '0' || v[i] > '9')
				return entry_error(ps, "has a limit \"%.*s\" that is not an integer.",
								   (int) Min(len, 40), v);
			zero = zero && v[i] == '0';
		}
		if (zero)
		{
			*out = 0;
			return true;
		}
		if (len == 1)
			return entry_error(ps, "has a limit \"-\" that is not an integer.");
		if (ps->type == RG_POLICY_RESERVATIONS)
			return entry_error(ps, "has a negative number: a reservation is 0 or more.");
		return entry_error(ps, "has a negative limit: a budget is 0 or more.");
	}
	if (len > 0 && v[0] == '+')
		i++;
	if (i == len)
		return entry_error(ps, "has no limit after \"=\".");
	for (; i < len; i++)
	{
		if (v[i] < '0' || v[i] > '9')
			return entry_error(ps, "has a limit \"%.*s\" that is not an integer.",
							   (int) Min(len, 40), v);
		val = val * 10 + (v[i] - '0');
		if (val > INT_MAX)
			return entry_error(ps, "has a limit out of range (at most %d).", INT_MAX);
	}
	*out = (int32) val;
	return true;
}

/* Parse a duration (PostgreSQL time units; bare number = seconds) into ms. */
static bool
parse_duration(RGParser *ps, const char *v, size_t len, int32 *out)
{
	static const struct
	{
		const char *unit;
		double		ms;
	}			units[] = {
		{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"min", 60000},
		{"h", 3600000}, {"d", 86400000}, {"", 1000}
	};
	char		buf[64];
	const char *num;
	char	   *end;
	double		val;
	size_t		ulen;
	int			i;

	if (len == 0)
		return entry_error(ps, "has no duration after \"=\".");
	if (len >= sizeof(buf))
		return entry_error(ps, "has a duration that is too long to be valid.");
	memcpy(buf, v, len);
	buf[len] = '\0';
	/* a sign, as core's units take one: "-0" is 0, anything below it is refused */
	num = buf[0] == '-' || buf[0] == '+' ? buf + 1 : buf;
	if (!((num[0] >= '0' && num[0] <= '9') || num[0] == '.'))
		return entry_error(ps, "has a duration \"%s\" that is not a number with an optional unit (us, ms, s, min, h, d).", buf);
	errno = 0;
	val = strtod(num, &end);
	if (end == num || errno != 0 || isnan(val) || isinf(val))
		return entry_error(ps, "has a duration \"%s\" that is not a number with an optional unit (us, ms, s, min, h, d).", buf);
	if (buf[0] == '-' && val != 0)
		return entry_error(ps, "has a negative duration.");
	while (is_space(*end))
		end++;
	ulen = strlen(end);
	for (i = 0; i < (int) lengthof(units); i++)
	{
		if (strlen(units[i].unit) == ulen && strcmp(units[i].unit, end) == 0)
			break;
	}
	if (i == (int) lengthof(units))
		return entry_error(ps, "has a duration \"%s\" with an unknown unit (use us, ms, s, min, h or d).", buf);
	val *= units[i].ms;
	if (val >= (double) INT_MAX + 0.5)
		return entry_error(ps, "has a duration out of range (at most %d ms).", INT_MAX);
	/* round to whole ms, but never turn a positive limit into "never" */
	*out = (int32) (val + 0.5);
	if (*out == 0 && val > 0)
		*out = 1;
	return true;
}

/*
 * Parse one entry at the cursor into *e.  On return the cursor is at the
 * comma that ends it, or at the end of the text.
 */
static bool
parse_entry(RGParser *ps, RGEntry *e)
{
	const char *v;
	const char *vend;
	const char *name_end;

	memset(e, 0, sizeof(*e));
	ps->entry_start = ps->p;

	if (*ps->p == '*')
	{
		ps->p++;
		e->kind = RG_ENTRY_DEFAULT;
	}
	else if (*ps->p == '+')
	{
		ps->p++;
		skip_space(ps);
		e->kind = RG_ENTRY_GROUP;
		if (!parse_name(ps, e->name))
			return false;
	}
	else if (*ps->p == '@')
	{
		ps->p++;
		skip_space(ps);
		e->kind = RG_ENTRY_DATABASE;
		if (!parse_name(ps, e->db))
			return false;
	}
	else
	{
		e->kind = RG_ENTRY_ROLE;
		if (!parse_name(ps, e->name))
			return false;
		skip_space(ps);
		if (*ps->p == '@')
		{
			ps->p++;
			skip_space(ps);
			e->kind = RG_ENTRY_ROLE_DATABASE;
			if (!parse_name(ps, e->db))
				return false;
		}
	}

	if (ps->type == RG_POLICY_TIMEOUTS &&
		(e->kind == RG_ENTRY_DATABASE || e->kind == RG_ENTRY_ROLE_DATABASE))
		return entry_error(ps, "names a database: timeouts take only name, +group or *.");
	if (ps->type == RG_POLICY_RESERVATIONS &&
		e->kind != RG_ENTRY_ROLE && e->kind != RG_ENTRY_GROUP)
		return entry_error(ps, "%s: reservations take only name or +group.",
						   e->kind == RG_ENTRY_DEFAULT ? "is a default (*)" : "names a database");

	name_end = ps->p;
	skip_space(ps);
	if (*ps->p != '=')
	{
		if (*ps->p == '\0' || *ps->p == ',')
			return entry_error(ps, "has no \"=\".");
		if (ps->p == name_end && e->kind != RG_ENTRY_DEFAULT)
			return entry_error(ps, "has \"%c\" where \"=\" was expected (quote names that are not plain identifiers).",
							   *ps->p);
		return entry_error(ps, "has \"%c\" where \"=\" was expected.", *ps->p);
	}
	ps->p++;
	skip_space(ps);

	/* the value runs to the next comma (values never contain one) */
	v = ps->p;
	while (*ps->p && *ps->p != ',')
		ps->p++;
	vend = ps->p;
	while (vend > v && is_space(vend[-1]))
		vend--;

	if (ps->type != RG_POLICY_TIMEOUTS)
		return parse_count(ps, v, (size_t) (vend - v), &e->value);
	return parse_duration(ps, v, (size_t) (vend - v), &e->value);
}

/*
 * Walk the whole text.  With entries == NULL, only validate and count;
 * otherwise fill entries[].
 */
static bool
parse_all(RGParser *ps, RGEntry *entries, int *count)
{
	RGEntry		scratch;
	int			n = 0;

	ps->p = ps->text;
	skip_space(ps);
	if (*ps->p == '\0')
	{
		*count = 0;
		return true;
	}
	for (;;)
	{
		skip_space(ps);
		if (*ps->p == ',' || *ps->p == '\0')
		{
			snprintf(ps->errbuf, ps->errlen, "%s",
					 *ps->p == ',' ? "An entry is empty (two commas in a row, or a leading comma)."
					 : "An entry is empty (the list ends with a comma).");
			return false;
		}
		if (!parse_entry(ps, entries ? &entries[n] : &scratch))
			return false;
		n++;
		if (*ps->p == '\0')
			break;
		ps->p++;				/* the comma */
	}
	*count = n;
	return true;
}

static bool
entry_equal(const RGEntry *a, int kind, const char *name, const char *db)
{
	return a->kind == kind && strcmp(a->name, name) == 0 && strcmp(a->db, db) == 0;
}

RGPolicy *
rg_policy_parse(RGPolicyType type, const char *text,
				RGAllocFunc alloc, RGFreeFunc dealloc,
				char *errbuf, size_t errlen)
{
	RGParser	ps;
	RGPolicy   *policy;
	int32	   *slots;
	int			count;
	int			nslots;
	int			i;
	size_t		size;

	errbuf[0] = '\0';
	memset(&ps, 0, sizeof(ps));
	ps.type = type;
	ps.text = text ? text : "";
	ps.errbuf = errbuf;
	ps.errlen = errlen;

	/* pass 1: validate and count */
	if (!parse_all(&ps, NULL, &count))
		return NULL;

	/* hash slots: a power of two at least twice the entries */
	nslots = 4;
	while (nslots < 2 * count)
		nslots *= 2;

	size = offsetof(RGPolicy, entries) + sizeof(RGEntry) * (size_t) count +
		sizeof(int32) * (size_t) nslots;
	policy = alloc(size);
	if (policy == NULL)
		return NULL;
	memset(policy, 0, size);
	policy->nentries = count;
	policy->default_index = -1;
	policy->hashmask = (uint32) nslots - 1;

	/* pass 2: fill, then index and reject duplicates */
	if (!parse_all(&ps, policy->entries, &count))
	{
		/* cannot happen: pass 1 accepted the same text */
		dealloc(policy);
		return NULL;
	}
	slots = policy_slots(policy);
	for (i = 0; i < nslots; i++)
		slots[i] = -1;
	for (i = 0; i < count; i++)
	{
		RGEntry    *e = &policy->entries[i];
		uint32		h = entry_hash(e->kind, e->name, e->db) & policy->hashmask;

		while (slots[h] >= 0)
		{
			if (entry_equal(&policy->entries[slots[h]], e->kind, e->name, e->db))
			{
				char		left[RG_ENTRY_TEXT_LEN];

				rg_entry_format(e, left, sizeof(left));
				snprintf(errbuf, errlen, "Entry \"%s\" appears more than once.", left);
				dealloc(policy);
				return NULL;
			}
			h = (h + 1) & policy->hashmask;
		}
		slots[h] = i;
		if (e->kind == RG_ENTRY_DEFAULT)
			policy->default_index = i;
		else if (e->kind == RG_ENTRY_GROUP)
			policy->ngroups++;
	}
	return policy;
}

const RGEntry *
rg_policy_lookup(const RGPolicy *policy, int kind, const char *name, const char *db)
{
	const int32 *slots;
	uint32		h;

	if (policy == NULL || policy->nentries == 0)
		return NULL;
	if (name == NULL)
		name = "";
	if (db == NULL)
		db = "";
	slots = policy_slots(policy);
	h = entry_hash(kind, name, db) & policy->hashmask;
	while (slots[h] >= 0)
	{
		const RGEntry *e = &policy->entries[slots[h]];

		if (entry_equal(e, kind, name, db))
			return e;
		h = (h + 1) & policy->hashmask;
	}
	return NULL;
}

/* Append name to buf at *pos, double-quoted if it is not a plain identifier. */
static void
format_name(const char *name, char *buf, size_t len, size_t *pos)
{
	bool		plain = name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9') &&
		name[0] != '$';
	const char *s;

	for (s = name; *s && plain; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			  c == '$' || c >= 0x80))
			plain = false;
	}
	if (plain)
	{
		*pos += snprintf(buf + *pos, len - *pos, "%s", name);
		return;
	}
	if (*pos + 1 < len)
		buf[(*pos)++] = '"';
	for (s = name; *s; s++)
	{
		if (*s == '"' && *pos + 1 < len)
			buf[(*pos)++] = '"';
		if (*pos + 1 < len)
			buf[(*pos)++] = *s;
	}
	if (*pos + 1 < len)
		buf[(*pos)++] = '"';
	buf[*pos] = '\0';
}

void
rg_entry_format(const RGEntry *entry, char *buf, size_t len)
{
	size_t		pos = 0;

	buf[0] = '\0';
	switch ((RGEntryKind) entry->kind)
	{
		case RG_ENTRY_DEFAULT:
			snprintf(buf, len, "*");
			break;
		case RG_ENTRY_ROLE:
			format_name(entry->name, buf, len, &pos);
			break;
		case RG_ENTRY_GROUP:
			buf[pos++] = '+';
			format_name(entry->name, buf, len, &pos);
			break;
		case RG_ENTRY_DATABASE:
			buf[pos++] = '@';
			format_name(entry->db, buf, len, &pos);
			break;
		case RG_ENTRY_ROLE_DATABASE:
			format_name(entry->name, buf, len, &pos);
			if (pos + 1 < len)
				buf[pos++] = '@';
			buf[pos] = '\0';
			format_name(entry->db, buf, len, &pos);
			break;
	}
}

/*
 * Parse one host entry (text[0..len)) into *e.  Returns false with a
 * message in errbuf.
 */
static bool
parse_host(const char *text, size_t len, RGHostEntry *e, char *errbuf, size_t errlen)
{
	char		buf[64];
	char	   *slash;
	int			maxbits;
	long		bits;
	int			i;

	memset(e, 0, sizeof(*e));
	if (len >= sizeof(buf))
	{
		snprintf(errbuf, errlen, "Entry \"%.*s...\" is too long to be an address or CIDR block.",
				 RG_ERR_ENTRY_MAX, text);
		return false;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	memcpy(e->text, buf, len + 1);

	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, e->addr) == 1)
	{
		e->family = 4;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, buf, e->addr) == 1)
	{
		e->family = 6;
		maxbits = 128;
	}
	else
	{
		snprintf(errbuf, errlen, "Entry \"%s\" is not an IPv4 or IPv6 address or CIDR block (host names are not allowed).",
				 e->text);
		return false;
	}

	bits = maxbits;
	if (slash)
	{
		const char *b = slash + 1;
		char	   *end;

		if (*b < '0' || *b > '9')
		{
			snprintf(errbuf, errlen, "Entry \"%s\" has no prefix length after \"/\".", e->text);
			return false;
		}
		errno = 0;
		bits = strtol(b, &end, 10);
		if (*end != '\0')
		{
			snprintf(errbuf, errlen, "Entry \"%s\" has a prefix length \"%s\" that is not an integer.",
					 e->text, b);
			return false;
		}
		if (errno != 0 || bits < 0 || bits > maxbits)
		{
			snprintf(errbuf, errlen, "Entry \"%s\" has a prefix length out of range (0 to %d for %s).",
					 e->text, maxbits, e->family == 4 ? "IPv4" : "IPv6");
			return false;
		}
	}
	/*
	 * An IPv4-mapped IPv6 entry (::ffff:a.b.c.d/96 and longer) is an IPv4
	 * one: clients arriving that way are matched as IPv4.
	 */
	if (e->family == 6 && bits >= 96 &&
		memcmp(e->addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
	{
		memmove(e->addr, e->addr + 12, 4);
		memset(e->addr + 4, 0, 12);
		e->family = 4;
		maxbits = 32;
		bits -= 96;
	}
	e->bits = (uint8) bits;

	/* clear host bits, as pg_hba.conf's masks do */
	for (i = 0; i < maxbits / 8; i++)
	{
		int			keep = (int) bits - i * 8;

		if (keep <= 0)
			e->addr[i] = 0;
		else if (keep < 8)
			e->addr[i] &= (uint8) (0xff << (8 - keep));
	}
	return true;
}

RGHostList *
rg_hosts_parse(const char *text, RGAllocFunc alloc, char *errbuf, size_t errlen)
{
	const char *p;
	int			count = 0;
	int			pass;
	RGHostList *list = NULL;
	RGHostEntry scratch;

	errbuf[0] = '\0';
	if (text == NULL)
		text = "";

	/* pass 0 validates and counts, pass 1 fills */
	for (pass = 0; pass < 2; pass++)
	{
		int			n = 0;
		bool		all = false;

		p = text;
		while (is_space(*p))
			p++;
		if (*p != '\0')
		{
			for (;;)
			{
				const char *start;
				const char *end;

				while (is_space(*p))
					p++;
				start = p;
				while (*p && *p != ',')
					p++;
				end = p;
				while (end > start && is_space(end[-1]))
					end--;
				if (end == start)
				{
					snprintf(errbuf, errlen, "%s",
							 *p == ',' ? "An entry is empty (two commas in a row, or a leading comma)."
							 : "An entry is empty (the list ends with a comma).");
					return NULL;
				}
				if ((size_t) (end - start) == 3 && strncasecmp(start, "all", 3) == 0)
					all = true;
				else
				{
					if (!parse_host(start, (size_t) (end - start),
									list ? &list->entries[n] : &scratch,
									errbuf, errlen))
						return NULL;
					n++;
				}
				if (*p == '\0')
					break;
				p++;
			}
		}
		if (pass == 0)
		{
			size_t		size = offsetof(RGHostList, entries) + sizeof(RGHostEntry) * (size_t) n;

			count = n;
			list = alloc(size);
			if (list == NULL)
				return NULL;
			memset(list, 0, size);
		}
		list->all = all;
		list->nentries = count;
	}
	return list;
}

const RGHostEntry *
rg_hosts_match(const RGHostList *list, int family, const uint8 *addr)
{
	static const RGHostEntry all_entry = {0, 0, {0}, "all"};
	int			i;

	if (list == NULL)
		return NULL;
	if (list->all)
		return &all_entry;
	for (i = 0; i < list->nentries; i++)
	{
		const RGHostEntry *e = &list->entries[i];
		int			full = e->bits / 8;
		int			rest = e->bits % 8;

		if (e->family != family)
			continue;
		if (memcmp(e->addr, addr, full) != 0)
			continue;
		if (rest && ((addr[full] ^ e->addr[full]) & (uint8) (0xff << (8 - rest))) != 0)
			continue;
		return e;
	}
	return NULL;
}
