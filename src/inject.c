/*-------------------------------------------------------------------------
 *
 * inject.c
 *	  The pause points of test builds (see inject.h).  Compiled to nothing
 *	  unless RG_INJECTION_POINTS is defined.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "inject.h"

#ifdef RG_INJECTION_POINTS

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libpq/pqsignal.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

void
rg_inject(const char *name, bool signals_held)
{
	char		armed[MAXPGPATH];
	char		held[MAXPGPATH];
	struct stat st;
	sigset_t	saved;

	if (DataDir == NULL)
		return;
	snprintf(armed, sizeof(armed), "%s/rg_inject/%s", DataDir, name);
	snprintf(held, sizeof(held), "%s.%d", armed, (int) MyProcPid);
	if (rename(armed, held) != 0)
		return;					/* not armed, or another backend took it */

	elog(LOG, "role_guard test build: held at injection point \"%s\"", name);
	if (signals_held)
		sigprocmask(SIG_SETMASK, &BlockSig, &saved);
	while (stat(held, &st) == 0)
	{
		/* 10 ms steps: a test-build path, woken by a file, not a latch */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (signals_held)
		sigprocmask(SIG_SETMASK, &saved, NULL);
	elog(LOG, "role_guard test build: woken at injection point \"%s\"", name);
}

#else

/* ISO C wants something in a translation unit. */
extern int	rg_inject_unused;

#endif
