/*-------------------------------------------------------------------------
 *
 * authwire.c
 *	  Hold back the one message of an authentication exchange that tells a
 *	  client its secret was right, when role_guard will refuse the login
 *	  after the exchange anyway.
 *
 * role_guard refuses some logins in ClientAuthentication_hook whatever
 * their authentication did (a blocked pair, authblock.c; a superuser on a
 * denied host, deny.c and auth.c), so that a refused client cannot learn
 * whether its password was right.  For most
 * methods nothing goes to the client between the secret and the hook.
 * SASL (SCRAM) is the exception: when the client's proof is right,
 * CheckSASLAuth() queues AuthenticationSASLFinal (the server's signature,
 * authentication request code AUTH_REQ_SASL_FIN) before it returns, and a
 * wrong proof gets no such message.  sendAuthRequest() does not flush it;
 * it would go out with the hook's ErrorResponse.
 *
 * So the postmaster puts a PQcommMethods of its own in front of the
 * socket's (PqCommMethods is a plain pointer; backends inherit it when they
 * are forked), always, whatever the settings were at the fork: a reload may
 * turn login blocks or the denial on while a login is in its exchange.  It
 * passes every message through, but before an AUTH_REQ_SASL_FIN goes out
 * during authentication it reads the settings again (a reload since the
 * fork applies) and asks whether the login will be refused; if so the
 * message is kept aside, and the client sees exactly what a wrong password
 * shows it: its proof, then the ErrorResponse.  The login hook decides with
 * the settings of its own moment; a login it admits gets the message kept
 * aside just before core's AuthenticationOk (rg_authwire_release: a reload
 * or role_guard_unblock() in between lifted what would have refused it), so
 * the client's exchange completes as usual.  The hook then puts the
 * socket's methods back (rg_authwire_done), so a session pays nothing
 * after login.  A backend that another module's methods wrap keeps ours
 * under theirs, passing everything through.
 *
 * All state is backend-local (or the postmaster's); no shared memory, no
 * lock.  Builds with EXEC_BACKEND (Windows) re-create the postmaster's
 * globals in each backend and are not covered: there the final message
 * still goes out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/libpq.h"
#include "libpq/libpq-be.h"
#include "libpq/pqcomm.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "postmaster/postmaster.h"
#include "utils/memutils.h"

#include "role_guard.h"

/* The methods the postmaster put in front of the socket's, and those. */
static PQcommMethods rg_wire_methods;
static const PQcommMethods *rg_wire_inner = NULL;

/* This backend's login: was the final message sent, or held back? */
static RGAuthWireState rg_wire_state = RG_WIRE_NONE;

/* The 'R' message held back (its body), in TopMemoryContext until sent. */
static char *rg_wire_held = NULL;
static size_t rg_wire_held_len = 0;

/*
 * Will role_guard refuse this login after authentication whatever its
 * outcome?  Each reason that refuses that way answers here: the superuser
 * denial (deny.c) and a login block (authblock.c).
 */
static bool
rg_authwire_refuses(const Port *port)
{
	return rg_deny_login_refuses(port) || rg_authblock_refuses(port);
}

static int
rg_wire_putmessage(char msgtype, const char *s, size_t len)
{
	uint32		code;

	if (msgtype == 'R' && len >= sizeof(code) && ClientAuthInProgress &&
		rg_wire_state == RG_WIRE_NONE && MyProcPort != NULL)
	{
		memcpy(&code, s, sizeof(code));
		if (pg_ntoh32(code) == AUTH_REQ_SASL_FIN)
		{
			/* a reload since the fork applies (as it will in the hook) */
			rg_policy_refresh();
			if (rg_authwire_refuses(MyProcPort))
			{
				rg_wire_held = MemoryContextAlloc(TopMemoryContext, len);
				memcpy(rg_wire_held, s, len);
				rg_wire_held_len = len;
				rg_wire_state = RG_WIRE_WITHHELD;
				return 0;
			}
			rg_wire_state = RG_WIRE_SENT;
		}
	}
	return rg_wire_inner->putmessage(msgtype, s, len);
}

/*
 * Postmaster (or a standalone backend), at load: put our methods in front
 * of the socket's.  Backends leave what they inherited alone.
 */
void
rg_authwire_install(void)
{
	if (IsUnderPostmaster || PqCommMethods == &rg_wire_methods)
		return;
	rg_wire_inner = PqCommMethods;
	rg_wire_methods = *PqCommMethods;
	rg_wire_methods.putmessage = rg_wire_putmessage;
	PqCommMethods = &rg_wire_methods;
}

/*
 * The login hook: authentication is over, put the socket's methods back
 * (if ours are still the outermost).
 */
void
rg_authwire_done(void)
{
	if (PqCommMethods == &rg_wire_methods)
		PqCommMethods = rg_wire_inner;
}

/*
 * The login hook admits the login: send the final message held back (if
 * any), before core's AuthenticationOk, so the client's exchange completes.
 */
void
rg_authwire_release(void)
{
	if (rg_wire_held == NULL)
		return;
	/* through whatever wraps the socket now (ours passes it: not NONE) */
	rg_wire_state = RG_WIRE_SENT;
	(void) pq_putmessage('R', rg_wire_held, rg_wire_held_len);
	pfree(rg_wire_held);
	rg_wire_held = NULL;
}

/* What became of this login's SASL final message. */
RGAuthWireState
rg_authwire_state(void)
{
	return rg_wire_state;
}
