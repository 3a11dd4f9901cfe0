/*-------------------------------------------------------------------------
 *
 * roles.c
 *	  Role catalog look-ups shared by the login hook, the reaper and the
 *	  views: memberships, superuser membership, effective idle limits.
 *
 * Everything here reads pg_authid and pg_auth_members through the syscache
 * only (both are shared catalogs, so a process with no database can use
 * them), and needs a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_auth_members.h"
#include "catalog/pg_authid.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/syscache.h"

#include "role_guard.h"

/*
 * The roles "roleid" is a member of, directly or through other roles
 * (pg_auth_members, as is_member_of_role_nosuper sees it: SUPERUSER gives
 * no implicit membership), without roleid itself.  palloc'd.
 */
Oid *
rg_member_of(Oid roleid, int *count)
{
	List	   *roles = list_make1_oid(roleid);
	ListCell   *lc;
	Oid		   *result;
	int			n = 0;

	foreach(lc, roles)
	{
		CatCList   *memlist;
		int			i;

		memlist = SearchSysCacheList1(AUTHMEMMEMROLE,
									  ObjectIdGetDatum(lfirst_oid(lc)));
		for (i = 0; i < memlist->n_members; i++)
		{
			HeapTuple	tup = &memlist->members[i]->tuple;
			Oid			other = ((Form_pg_auth_members) GETSTRUCT(tup))->roleid;

			/* appending while iterating is fine: core does the same */
			roles = list_append_unique_oid(roles, other);
		}
		ReleaseSysCacheList(memlist);
	}

	result = palloc(sizeof(Oid) * list_length(roles));
	foreach(lc, roles)
	{
		if (lfirst_oid(lc) != roleid)
			result[n++] = lfirst_oid(lc);
	}
	list_free(roles);
	*count = n;
	return result;
}

/*
 * The first superuser role among "groups" (the roles a login role is a
 * member of), or InvalidOid.  Its name goes to *name.
 */
Oid
rg_superuser_group(const Oid *groups, int ngroups, NameData *name)
{
	int			i;

	for (i = 0; i < ngroups; i++)
	{
		HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(groups[i]));
		bool		super;

		if (!HeapTupleIsValid(tup))
			continue;
		super = ((Form_pg_authid) GETSTRUCT(tup))->rolsuper;
		if (super)
			namestrcpy(name, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
		ReleaseSysCache(tup);
		if (super)
			return groups[i];
	}
	return InvalidOid;
}

/*
 * One timeout list's limit for a role, in ms (0: none).  The role's own
 * entry wins; otherwise the smallest limit among the +group entries of the
 * roles it is a member of (the role itself included; 0 there means never,
 * so it only wins when every group entry says 0); otherwise "*".
 */
static int32
rg_timeout_lookup(const RGPolicy *policy, const char *rolname,
				  const NameData *groupnames, int ngroups)
{
	const RGEntry *e;
	bool		group_found = false;
	int32		best = 0;
	int			i;

	if (policy == NULL || policy->nentries == 0)
		return 0;
	e = rg_policy_lookup(policy, RG_ENTRY_ROLE, rolname, NULL);
	if (e)
		return e->value;
	for (i = -1; policy->ngroups > 0 && i < ngroups; i++)
	{
		e = rg_policy_lookup(policy, RG_ENTRY_GROUP,
							 i < 0 ? rolname : NameStr(groupnames[i]), NULL);
		if (e == NULL)
			continue;
		group_found = true;
		if (e->value > 0 && (best == 0 || e->value < best))
			best = e->value;
	}
	if (group_found)
		return best;
	e = rg_policy_default(policy);
	return e ? e->value : 0;
}

/*
 * A role's effective idle and idle-in-transaction limits (ms, 0 = none)
 * under this process's settings.  False if the role does not exist.
 */
bool
rg_role_timeouts(Oid roleid, int32 *idle_ms, int32 *iit_ms, NameData *rolname)
{
	HeapTuple	tup;
	Oid		   *groups;
	NameData   *groupnames;
	int			ngroups;
	int			nnames = 0;
	int			i;

	*idle_ms = *iit_ms = 0;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		return false;
	namestrcpy(rolname, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
	ReleaseSysCache(tup);

	groups = rg_member_of(roleid, &ngroups);
	groupnames = palloc(sizeof(NameData) * (ngroups + 1));
	for (i = 0; i < ngroups; i++)
	{
		tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(groups[i]));
		if (!HeapTupleIsValid(tup))
			continue;
		namestrcpy(&groupnames[nnames++], NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname));
		ReleaseSysCache(tup);
	}
	*idle_ms = rg_timeout_lookup(rg_idle_timeouts, NameStr(*rolname), groupnames, nnames);
	*iit_ms = rg_timeout_lookup(rg_idle_in_transaction_timeouts, NameStr(*rolname),
								groupnames, nnames);
	pfree(groupnames);
	pfree(groups);
	return true;
}
