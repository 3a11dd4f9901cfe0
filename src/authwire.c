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
 * So while something here may refuse after authentication, the postmaster
 * puts a PQcommMethods of its own in front of the socket's (PqCommMethods
 * is a plain pointer; backends inherit it when they are forked).  It
 * passes every message through, but asks, before an AUTH_REQ_SASL_FIN goes
 * out during authentication, whether the login will be refused; if so the
 * message is dropped, and the client sees exactly what a wrong password
 * shows it: its proof, then the ErrorResponse.  The login hook then puts
 * the socket's methods back (rg_authwire_done), so a session pays nothing
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

#include "role_guard.h"

/* The methods the postmaster put in front of the socket's, and those. */
static PQcommMethods rg_wire_methods;
static const PQcommMethods *rg_wire_inner = NULL;

/* This backend's login: was the final message sent, or held back? */
static RGAuthWireState rg_wire_state = RG_WIRE_NONE;

/*
 * Will role_guard refuse this login after authentication whatever its
 * outcome?  Each reason that refuses that way answers here, with the state
 * to record: the superuser denial (deny.c) first, so that a login block is
 * still decided by authblock.c as for a wrong password.
 */
static RGAuthWireState
rg_authwire_refuses(const Port *port)
{
	if (rg_deny_login_refuses(port))
		return RG_WIRE_WITHHELD_DENY;
	if (rg_authblock_refuses(port))
		return RG_WIRE_WITHHELD;
	return RG_WIRE_NONE;
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
			RGAuthWireState held = rg_authwire_refuses(MyProcPort);

			if (held != RG_WIRE_NONE)
			{
				rg_wire_state = held;
				return 0;
			}
			rg_wire_state = RG_WIRE_SENT;
		}
	}
	return rg_wire_inner->putmessage(msgtype, s, len);
}

/*
 * Postmaster (or a standalone backend): put our methods in front of the
 * socket's while "wanted", take them away when not.  Called by the assign
 * hooks of the settings that may refuse after authentication; backends
 * leave what they inherited alone.
 */
void
rg_authwire_update(bool wanted)
{
	if (IsUnderPostmaster)
		return;
	if (wanted && PqCommMethods != &rg_wire_methods)
	{
		rg_wire_inner = PqCommMethods;
		rg_wire_methods = *PqCommMethods;
		rg_wire_methods.putmessage = rg_wire_putmessage;
		PqCommMethods = &rg_wire_methods;
	}
	else if (!wanted && PqCommMethods == &rg_wire_methods)
		PqCommMethods = rg_wire_inner;
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

/* What became of this login's SASL final message. */
RGAuthWireState
rg_authwire_state(void)
{
	return rg_wire_state;
}
