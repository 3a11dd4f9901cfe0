/*-------------------------------------------------------------------------
 *
 * roles.c
 *	  Catalog look-ups shared by the login hook, the reaper and the views:
 *	  memberships, superuser membership, effective idle limits, and what
 *	  core will check of a login's role and database after the hook.
 *
 * pg_authid and pg_auth_members are shared catalogs, so a process with no
 * database can read them.  Everything here needs a transaction.  A role's
 * groups always come through the shared membership cache (members.c); what
 * fills it on a miss are the "fresh" look-ups here, which scan the
 * catalogs' indexes with a new catalog snapshot, so that what they return
 * is never older than the moment they start, whatever this backend's
 * syscache holds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_auth_members.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "nodes/pg_list.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "role_guard.h"

/*
 * Append the roles "roleid" is a direct member of.  During authentication
 * the shared catalogs' indexes are not open yet (criticalSharedRelcachesBuilt
 * is false): like the syscache then, scan the heap.
 */
static List *
rg_direct_groups_fresh(Oid roleid, List *roles)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	rel = table_open(AuthMemRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_auth_members_member, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(roleid));
	scan = systable_beginscan(rel, AuthMemMemRoleIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		roles = list_append_unique_oid(roles,
									   ((Form_pg_auth_members) GETSTRUCT(tup))->roleid);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return roles;
}

/*
 * The roles "roleid" is a member of, directly or through other roles
 * (pg_auth_members, as is_member_of_role_nosuper sees it: SUPERUSER gives
 * no implicit membership), without roleid itself, in breadth-first order,
 * read from the catalogs with a new catalog snapshot and no syscache (see
 * the top of the file).  palloc'd.  The membership cache (members.c,
 * rg_members_resolve) is how the rest of role_guard gets them.
 */
Oid *
rg_member_of_fresh(Oid roleid, int *count)
{
	List	   *roles = list_make1_oid(roleid);
	ListCell   *lc;
	Oid		   *result;
	int			n = 0;

	InvalidateCatalogSnapshot();
	/* appending while iterating is fine: core does the same */
	foreach(lc, roles)
		roles = rg_direct_groups_fresh(lfirst_oid(lc), roles);

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
 * A role's name, SUPERUSER and CREATEROLE attributes read from pg_authid's index (after
 * rg_member_of_fresh, which took the new catalog snapshot).
 * False if the role is gone.
 */
bool
rg_role_fresh(Oid roleid, NameData *name, bool *rolsuper, bool *rolcreaterole)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	rel = table_open(AuthIdRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_authid_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(roleid));
	scan = systable_beginscan(rel, AuthIdOidIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tup);

		namestrcpy(name, NameStr(form->rolname));
		*rolsuper = form->rolsuper;
		*rolcreaterole = form->rolcreaterole;
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * One timeout list's limit for a role, in ms (0: none).  The role's own
 * entry wins; otherwise the smallest limit among the +group entries of the
 * roles it is a member of (the role itself included; 0 there means never,
 * so it only wins when every group entry says 0); otherwise "*".
 */
int32
rg_policy_limit(const RGPolicy *policy, const char *rolname,
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
 * What the reaper and the views need of a role: its name, SUPERUSER
 * attribute and membership in a superuser role, whether the superuser
 * denial covers it, and its effective idle and
 * idle-in-transaction limits under this process's settings.  False if the
 * role does not exist (dropped while its sessions run): then the limits
 * are those of "*", the entry for a role with no entry of its own and no
 * groups, and the name is left as it was.
 */
bool
rg_role_info(Oid roleid, RGRoleInfo *info)
{
	RGMembers	m;
	bool		rolcreaterole;
	int			i;

	info->rolsuper = false;
	info->super_member = false;
	memset(&info->deny, 0, sizeof(info->deny));
	m.groups = palloc(sizeof(Oid) * RG_MEMBERS_CACHED);
	m.names = palloc(sizeof(NameData) * RG_MEMBERS_CACHED);
	m.super = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	m.createrole = palloc(sizeof(bool) * RG_MEMBERS_CACHED);
	if (!rg_role_groups(roleid, &info->rolname, &info->rolsuper,
						&rolcreaterole, &m))
	{
		info->idle_ms = rg_policy_limit(rg_idle_timeouts, "", NULL, 0);
		info->iit_ms = rg_policy_limit(rg_idle_in_transaction_timeouts, "", NULL, 0);
		info->evict_ms = rg_policy_limit(rg_evict_idle, "", NULL, 0);
		return false;
	}
	for (i = 0; i < m.ngroups && !info->super_member; i++)
	{
		if (m.super[i])
		{
			info->super_member = true;
			info->supername = m.names[i];
		}
	}
	(void) rg_deny_covers_role(info->rolsuper, rolcreaterole, &m, &info->deny);
	info->idle_ms = rg_policy_limit(rg_idle_timeouts, NameStr(info->rolname),
									  m.names, m.ngroups);
	info->iit_ms = rg_policy_limit(rg_idle_in_transaction_timeouts,
									 NameStr(info->rolname), m.names, m.ngroups);
	info->evict_ms = rg_policy_limit(rg_evict_idle, NameStr(info->rolname),
									 m.names, m.ngroups);
	pfree(m.groups);
	pfree(m.names);
	pfree(m.super);
	pfree(m.createrole);
	return true;
}

/*
 * A role's name, SUPERUSER and CREATEROLE attributes and groups (with
 * their names and attributes if m->names is set; arrays as rg_members_resolve wants them),
 * through the membership cache.  False, with nothing filled, if the role
 * does not exist.  No lock held.
 */
bool
rg_role_groups(Oid roleid, NameData *rolname, bool *rolsuper,
			   bool *rolcreaterole, RGMembers *m)
{
	HeapTuple	tup;
	Form_pg_authid form;

	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		return false;
	form = (Form_pg_authid) GETSTRUCT(tup);
	namestrcpy(rolname, NameStr(form->rolname));
	*rolsuper = form->rolsuper;
	*rolcreaterole = form->rolcreaterole;
	ReleaseSysCache(tup);
	rg_members_resolve(roleid, rolname, *rolsuper, *rolcreaterole, m, false,
					   NULL, NULL);
	return true;
}

/*
 * Does PUBLIC have CONNECT on this pg_database row?  Then every role has,
 * and the full privilege check (which, in a new backend, reads the catalogs
 * for the role's memberships) can be skipped: by default (datacl NULL) and
 * for any ACL that keeps PUBLIC's CONNECT.
 */
static bool
rg_public_may_connect(HeapTuple tup, TupleDesc desc)
{
	Datum		values[Natts_pg_database];
	bool		nulls[Natts_pg_database];
	Acl		   *acl;
	AclItem    *items;
	int			i;

	/*
	 * heap_deform_tuple, not heap_getattr: the latter is an inline whose
	 * body changes between minor releases (17.12 calls a function 17.10's
	 * server does not have), the former a function every server exports.
	 */
	heap_deform_tuple(tup, desc, values, nulls);
	if (nulls[Anum_pg_database_datacl - 1])
		return true;			/* the default: PUBLIC has CONNECT */
	acl = DatumGetAclP(values[Anum_pg_database_datacl - 1]);
	items = ACL_DAT(acl);
	for (i = 0; i < ACL_NUM(acl); i++)
		if (items[i].ai_grantee == ACL_ID_PUBLIC &&
			(ACLITEM_GET_PRIVS(items[i]) & ACL_CONNECT) != 0)
			return true;
	return false;
}

/*
 * Will core refuse this role's login after ClientAuthentication_hook
 * returns, whatever the database?  The checks InitPostgres makes of the
 * role alone: it may log in; a replication connection needs REPLICATION
 * (or SUPERUSER).  The database's checks are rg_database_refuses
 * (members.c), through the database cache.
 */
bool
rg_role_refuses_login(const FormData_pg_authid *role, bool walsender)
{
	return !role->rolcanlogin ||
		(walsender && !role->rolsuper && !role->rolreplication);
}

/*
 * What core checks of a database at login, read from pg_database with a
 * fresh catalog snapshot, as core will read it: that it exists, is valid
 * and allows connections, and whether PUBLIC has CONNECT on it.
 */
void
rg_database_fresh(const char *dbname, RGDatabase *db)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	memset(db, 0, sizeof(*db));
	InvalidateCatalogSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(dbname));
	scan = systable_beginscan(rel, DatabaseNameIndexId,
							  criticalSharedRelcachesBuilt, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);

		db->oid = form->oid;
		db->connectable = form->datallowconn && !database_is_invalid_form(form);
		db->public_connect = rg_public_may_connect(tup, RelationGetDescr(rel));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}
