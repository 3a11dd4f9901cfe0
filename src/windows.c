/*-------------------------------------------------------------------------
 *
 * windows.c
 *	  Peaks by window: per counter, the peak of sessions (and of member
 *	  sessions, for +group entries), of active places (active.c folds its
 *	  counts' peaks in: rg_active_fold), the refusals and the waits in each
 *	  of the last 24 hours and each of the last 31 days.
 *
 * Each counter place has one RGWindows (shmem.h) in an array parallel to
 * the counters.  A slot is keyed by its absolute hour or day number (UTC,
 * counted from PostgreSQL's epoch, 2000-01-01), at index number % 24 (or
 * % 31).  Every change of a count goes through rg_counter_set (shmem.c),
 * which calls rg_windows_note: O(1), no allocation, no scan, under the
 * lock the change is made under.  When the hour (or day) has moved on since
 * the windows were last touched, the new hour's slot starts with the count
 * as it was, since nothing changed it meanwhile; reading a window, an hour
 * after the last one touched has the count as it is now.  That is what
 * makes an hour in which a role held sessions without logging in or out
 * show them.
 *
 * Wall-clock changes: the windows never go back.  The hour used is the
 * latest of the process's clock and the last hour the windows were touched
 * in, so after the clock steps back, counts go into the latest hour seen
 * (never into an hour counted already, never into a slot from a "future"
 * that would then be counted again) and a window is never negative; after
 * a step forward, the hours skipped count what was held through them.
 *
 * The clock is read once per login (rg_prepare) and once per exit
 * (rg_release_at_exit), before the lock; test builds may shift it by a
 * number of seconds written in $PGDATA/rg_inject/clock_shift (inject.c),
 * never through a setting.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "inject.h"
#include "role_guard.h"
#include "windows.h"

/* This process's clock, as hour and day numbers (0: not read yet). */
int32		rg_now_hour = 0;
int32		rg_now_day = 0;

/*
 * The windows' clock: the time, shifted in test builds only (see the top of
 * this file).
 */
TimestampTz
rg_windows_time(TimestampTz now)
{
	return now + RG_CLOCK_SHIFT_USECS();
}

/* Set this process's clock for the windows from a timestamp. */
void
rg_windows_clock(TimestampTz now)
{
	now = rg_windows_time(now);
	if (now < USECS_PER_DAY)
		now = USECS_PER_DAY;	/* hour and day 0 mean "never" */
	rg_now_hour = (int32) (now / USECS_PER_HOUR);
	rg_now_day = (int32) (now / USECS_PER_DAY);
}

/*
 * Make "now" the latest slot of a ring: reset its slot, starting with the
 * counts as they are (they were so since the last change).  The hours (or
 * days) skipped need no slot of their own: their counts were those this
 * slot starts with, so no window's peak misses them.  O(1).
 */
static void
rg_window_roll(RGWindowSlot *slots, int n, int32 *last, int16 *ix,
			   int32 now, const RGCounter *c)
{
	RGWindowSlot *s = &slots[now % n];

	if (now <= *last)
		return;
	memset(s, 0, sizeof(*s));
	s->number = now;
	s->peak = c->connections;
	s->member_peak = c->member_connections;
	*last = now;
	*ix = (int16) (now % n);
}

/*
 * The slow path of rg_windows_move (windows.h): the clock is not read yet
 * in this process, or is not at the windows' hour and day.  Moves the
 * windows on if the clock is ahead (never back).
 */
void
rg_windows_roll(RGWindows *w, const RGCounter *c)
{
	if (rg_now_hour == 0)
		rg_windows_clock(GetCurrentTimestamp());
	rg_window_roll(w->hours, RG_WINDOW_HOURS, &w->last_hour, &w->hour_ix,
				   rg_now_hour, c);
	rg_window_roll(w->days, RG_WINDOW_DAYS, &w->last_day, &w->day_ix,
				   rg_now_day, c);
}

/* A counter's windows, moved on to this process's clock.  Lock held. */
static RGWindows *
rg_windows_current(const RGCounter *c)
{
	RGWindows  *w = rg_counter_windows(c);

	rg_windows_move(w, c);
	return w;
}

/* Count one refusal or wait in a counter's current hour and day.  Lock held. */
void
rg_windows_count(const RGCounter *c, RGWindowCount what)
{
	RGWindows  *w = rg_windows_current(c);
	RGWindowSlot *h = &w->hours[w->hour_ix];
	RGWindowSlot *d = &w->days[w->day_ix];

	switch (what)
	{
		case RG_WINDOW_REJECTED:
			h->rejected++;
			d->rejected++;
			break;
		case RG_WINDOW_MEMBER_REJECTED:
			h->member_rejected++;
			d->member_rejected++;
			break;
		case RG_WINDOW_WAITED:
			h->waited++;
			d->waited++;
			break;
		case RG_WINDOW_MEMBER_WAITED:
			h->member_waited++;
			d->member_waited++;
			break;
		case RG_WINDOW_ACTIVE_WAITED:
			h->active_waited++;
			d->active_waited++;
			break;
	}
}

/*
 * The most active places a count held since it was last folded in
 * (rg_active_fold, active.c): raise its counter's current hour and day.
 * Lock held exclusively.
 */
void
rg_windows_active_peak(const RGCounter *c, bool member, int32 peak)
{
	rg_windows_raise(rg_windows_current(c),
					 member ? offsetof(RGWindowSlot, member_active_peak) :
					 offsetof(RGWindowSlot, active_peak), peak);
}

/*
 * Count a login in the +group (as member_what), @db or name@db entry (as
 * what) that refused it or made it wait; nothing for the other kinds,
 * whose counter is the role's own, nor for reservations (no entry).
 */
static void
rg_windows_entry(int kind, const RGCounter *entry, RGWindowCount member_what,
				 RGWindowCount what)
{
	if (entry == NULL)
		return;
	if (kind == RG_ENTRY_GROUP)
		rg_windows_count(entry, member_what);
	else if (kind == RG_ENTRY_DATABASE || kind == RG_ENTRY_ROLE_DATABASE)
		rg_windows_count(entry, what);
}

/*
 * A login refused (or, in monitor mode, that would be): count it for its
 * role, and for the +group, @db or name@db entry that refused it, in that
 * entry's counter ("kind" -1: refused for reservations, no entry).  Lock
 * held exclusively.
 */
void
rg_windows_refusal(const RGCounter *role, int kind, const RGCounter *entry)
{
	rg_windows_count(role, RG_WINDOW_REJECTED);
	rg_windows_entry(kind, entry, RG_WINDOW_MEMBER_REJECTED, RG_WINDOW_REJECTED);
}

/*
 * A login begins to wait for a place in a full entry: count it for the
 * +group, @db or name@db entry it waits for (its role's own wait is
 * counted when the wait ends, by auth.c).  Lock held exclusively.
 */
void
rg_windows_wait(int kind, const RGCounter *entry)
{
	rg_windows_entry(kind, entry, RG_WINDOW_MEMBER_WAITED, RG_WINDOW_WAITED);
}

/*
 * Sum one ring over its window ending at "now": a slot that holds its
 * number is read as it is; a number after the last one touched had the
 * count as it is now all along (nothing changed it), from the start of the
 * windows on; any other had nothing (before the windows began).
 */
static void
rg_window_sum(const RGWindowSlot *slots, int n, int32 last, int32 now,
			  int32 since, int32 connections, int32 member_connections,
			  RGWindowSum *sum)
{
	int32		k;

	for (k = now - n + 1; k <= now; k++)
	{
		const RGWindowSlot *s = &slots[((k % n) + n) % n];

		if (k > 0 && s->number == k)
		{
			sum->peak = Max(sum->peak, s->peak);
			sum->member_peak = Max(sum->member_peak, s->member_peak);
			sum->rejected += s->rejected;
			sum->member_rejected += s->member_rejected;
			sum->waited += s->waited;
			sum->active_peak = Max(sum->active_peak, s->active_peak);
			sum->member_active_peak = Max(sum->member_active_peak,
										  s->member_active_peak);
			sum->active_waited += s->active_waited;
			sum->member_waited += s->member_waited;
		}
		else if (k >= since && (last == 0 ? k == now : k > last))
		{
			sum->peak = Max(sum->peak, connections);
			sum->member_peak = Max(sum->member_peak, member_connections);
		}
	}
}

/*
 * A copy of a counter's windows read at "now": its last 24 hours and its
 * last 31 days.  windows_since is when the windows began (RGShared, on
 * the windows' clock: rg_windows_time).
 */
void
rg_windows_read(const RGWindows *w, int32 connections,
				int32 member_connections, TimestampTz now,
				TimestampTz windows_since, RGWindowSum *last24h,
				RGWindowSum *last31d)
{
	TimestampTz since = windows_since;
	int32		hour;
	int32		day;

	now = rg_windows_time(now);
	hour = (int32) (now / USECS_PER_HOUR);
	day = (int32) (now / USECS_PER_DAY);

	memset(last24h, 0, sizeof(*last24h));
	memset(last31d, 0, sizeof(*last31d));
	rg_window_sum(w->hours, RG_WINDOW_HOURS, w->last_hour, Max(hour, w->last_hour),
				  (int32) (since / USECS_PER_HOUR), connections,
				  member_connections, last24h);
	rg_window_sum(w->days, RG_WINDOW_DAYS, w->last_day, Max(day, w->last_day),
				  (int32) (since / USECS_PER_DAY), connections,
				  member_connections, last31d);
}

/* Are a counter's windows untouched? */
bool
rg_windows_empty(const RGWindows *w)
{
	return w->last_hour == 0 && w->last_day == 0;
}
