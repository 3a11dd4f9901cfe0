/*-------------------------------------------------------------------------
 *
 * inject.h
 *	  Pause points for tests: RG_INJECT("name") marks a place where a test
 *	  may hold one backend, so that a race can be made to happen every time
 *	  instead of hoped for.
 *
 * Only test builds have them (test/run compiles with -DRG_INJECTION_POINTS);
 * in any other build RG_INJECT is nothing at all.  How a test uses one:
 *
 *	arm		create the file $PGDATA/rg_inject/NAME (empty)
 *	reached	the first backend that gets to the point renames it to
 *			NAME.PID (rename is atomic: one arm holds exactly one backend)
 *			and waits there, its interrupts served, while that file exists
 *	wake	remove NAME.PID; the backend goes on
 *
 * RG_INJECT_SIGNALS_HELD("name") holds the same way with every signal
 * blocked meanwhile (as for a process that is not scheduled): signals sent
 * to it stay pending, and those of one kind are merged by the kernel, until
 * it is woken.
 *
 * A point inside a held LWLock holds that lock too (that is the point of
 * some of them); interrupts are held off there, so only a wake ends it.
 * Works the same on every PostgreSQL version (core's injection_points
 * module exists only from 17, and only in builds made with it).
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_INJECT_H
#define RG_INJECT_H

#ifdef RG_INJECTION_POINTS
extern void rg_inject(const char *name, bool signals_held);
#define RG_INJECT(name) rg_inject(name, false)
#define RG_INJECT_SIGNALS_HELD(name) rg_inject(name, true)
#else
#define RG_INJECT(name) ((void) 0)
#define RG_INJECT_SIGNALS_HELD(name) ((void) 0)
#endif

/*
 * A test's clock for role_guard's windows (windows.c): test builds read a
 * shift in seconds (a decimal integer, may be negative) from the file
 * $PGDATA/rg_inject/clock_shift at each reading of the clock; without the
 * file, or in any other build, no shift.  No setting reaches it.
 */
#ifdef RG_INJECTION_POINTS
extern int64 rg_inject_clock_shift(void);
#define RG_CLOCK_SHIFT_USECS() rg_inject_clock_shift()
#else
#define RG_CLOCK_SHIFT_USECS() INT64CONST(0)
#endif

#endif							/* RG_INJECT_H */
