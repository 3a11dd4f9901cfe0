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

#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

void
rg_inject(const char *name)
{
	char		armed[MAXPGPATH];
	char		held[MAXPGPATH];
	struct stat st;

	if (DataDir == NULL)
		return;
	snprintf(armed, sizeof(armed), "%s/rg_inject/%s", DataDir, name);
	snprintf(held, sizeof(held), "%s.%d", armed, (int) MyProcPid);
	if (rename(armed, held) != 0)
		return;					/* not armed, or another backend took it */

	elog(LOG, "role_guard test build: held at injection point \"%s\"", name);
	while (stat(held, &st) == 0)
	{
		/* 10 ms steps: a test-build path, woken by a file, not a latch */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	elog(LOG, "role_guard test build: woken at injection point \"%s\"", name);
}

#else

/* ISO C wants something in a translation unit. */
extern int	rg_inject_unused;

#endif
