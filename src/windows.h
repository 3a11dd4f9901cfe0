/*-------------------------------------------------------------------------
 *
 * windows.h
 *	  The login and exit paths' part of the windows (windows.c): the one
 *	  call made at every change of a count, inline so that a login and an
 *	  exit in the same hour cost a few instructions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RG_WINDOWS_H
#define RG_WINDOWS_H

#include "role_guard.h"

/* this process's clock (windows.c): hour and day numbers, 0 until read */
extern int32 rg_now_hour;
extern int32 rg_now_day;

extern void rg_windows_roll(RGWindows *w, const RGCounter *c);

/*
 * Make the windows' current slots those of this process's clock: nothing
 * to do in the same hour and day; otherwise rg_windows_roll.  Lock held.
 */
static inline void
rg_windows_move(RGWindows *w, const RGCounter *c)
{
	if (unlikely(rg_now_hour != w->last_hour || rg_now_day != w->last_day))
		rg_windows_roll(w, c);
}

/*
 * Raise a peak (the int32 field at "offset" in RGWindowSlot) of the
 * current hour and day to "value".  Lock held exclusively.
 */
static inline void
rg_windows_raise(RGWindows *w, size_t offset, int32 value)
{
	int32	   *h = (int32 *) ((char *) &w->hours[w->hour_ix] + offset);
	int32	   *d = (int32 *) ((char *) &w->days[w->day_ix] + offset);

	*h = Max(*h, value);
	*d = Max(*d, value);
}

/*
 * A count of a counter changes from "before" to "value": raise the peaks
 * of its current hour and day.  Called by rg_counter_set before the count
 * is stored.  A count going down raises no peak, but still moves the
 * windows on to a new hour, whose slot starts with the count before.  O(1),
 * no allocation.  Lock held exclusively.
 */
static inline void
rg_windows_note(RGWindows *w, const RGCounter *c, bool member, int32 before,
				int32 value)
{
	rg_windows_move(w, c);
	if (value > before)
		rg_windows_raise(w, member ? offsetof(RGWindowSlot, member_peak) :
						 offsetof(RGWindowSlot, peak), value);
}

#endif							/* RG_WINDOWS_H */
