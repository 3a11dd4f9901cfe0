/*
 * fuzz_policy.c: libFuzzer harness for role_guard's setting parsers.
 *
 * Built from the extension's own src/policy.c (which calls no backend
 * function) with -fsanitize=fuzzer,address,undefined; see test/fuzz/run.
 * The first input byte picks the parser, the rest is the setting's text.
 * Every accepted policy is then exercised: each entry is formatted and
 * looked up again (it must be found, and be itself), and a few addresses
 * are matched against accepted host lists.
 */
#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *
fuzz_alloc(size_t size)
{
	return malloc(size);
}

static void
fuzz_free(void *ptr)
{
	free(ptr);
}

static void
check_policy(const RGPolicy *p)
{
	int			i;
	int			defaults = 0;
	int			groups = 0;

	for (i = 0; i < p->nentries; i++)
	{
		const RGEntry *e = &p->entries[i];
		char		text[RG_ENTRY_TEXT_LEN];

		rg_entry_format(e, text, sizeof(text));
		if (strlen(text) >= sizeof(text) - 1)
			abort();			/* the buffer is meant to be big enough */
		if (rg_policy_lookup(p, e->kind, e->name, e->db) != e)
			abort();			/* every entry must be found as itself */
		if (e->kind == RG_ENTRY_DEFAULT)
			defaults++;
		if (e->kind == RG_ENTRY_GROUP)
			groups++;
		if (e->value < 0)
			abort();
	}
	if (defaults > 1 || groups != p->ngroups ||
		(defaults == 1) != (rg_policy_default(p) != NULL))
		abort();
}

static void
check_hosts(const RGHostList *h)
{
	static const uint8 v4[][4] = {{127, 0, 0, 1}, {10, 1, 2, 3}, {0, 0, 0, 0}, {255, 255, 255, 255}};
	static const uint8 v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	int			i;

	for (i = 0; i < (int) lengthof(v4); i++)
		(void) rg_hosts_match(h, 4, v4[i]);
	(void) rg_hosts_match(h, 6, v6);
	for (i = 0; i < h->nentries; i++)
	{
		const RGHostEntry *e = &h->entries[i];

		if (e->family != 4 && e->family != 6)
			abort();
		if (e->bits > (e->family == 4 ? 32 : 128))
			abort();
		/* an entry's own address always matches it */
		if (!h->all && rg_hosts_match(h, e->family, e->addr) == NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text;
	char		err[512];
	uint8_t		which;

	if (size == 0)
		return 0;
	which = data[0] % 4;
	text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	if (which == 2)
	{
		RGHostList *h = rg_hosts_parse(text, fuzz_alloc, err, sizeof(err));

		if (h)
		{
			check_hosts(h);
			free(h);
		}
		else if (err[0] == '\0')
			abort();			/* refusals always say why */
	}
	else
	{
		RGPolicy   *p = rg_policy_parse(which == 0 ? RG_POLICY_BUDGETS :
										which == 1 ? RG_POLICY_TIMEOUTS : RG_POLICY_RESERVATIONS,
										text, fuzz_alloc, fuzz_free, err, sizeof(err));

		if (p)
		{
			check_policy(p);
			free(p);
		}
		else if (err[0] == '\0')
			abort();
	}
	free(text);
	return 0;
}
