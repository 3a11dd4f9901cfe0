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
#include "datatype/timestamp.h"
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

/* The test clock's shift in microseconds (see inject.h). */
int64
rg_inject_clock_shift(void)
{
	char		path[MAXPGPATH];
	char		buf[32];
	FILE	   *f;
	long long	seconds = 0;

	if (DataDir == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/rg_inject/clock_shift", DataDir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) == NULL || sscanf(buf, "%lld", &seconds) != 1)
		seconds = 0;
	fclose(f);
	return (int64) seconds * USECS_PER_SEC;
}

#else

/* ISO C wants something in a translation unit. */
extern int	rg_inject_unused;

#endif
