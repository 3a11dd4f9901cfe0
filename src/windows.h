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
	RGWindowSlot *h;
	RGWindowSlot *d;

	rg_windows_move(w, c);
	if (value <= before)
		return;
	h = &w->hours[w->hour_ix];
	d = &w->days[w->day_ix];
	if (member)
	{
		h->member_peak = Max(h->member_peak, value);
		d->member_peak = Max(d->member_peak, value);
	}
	else
	{
		h->peak = Max(h->peak, value);
		d->peak = Max(d->peak, value);
	}
}

#endif							/* RG_WINDOWS_H */
