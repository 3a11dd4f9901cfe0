/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  One way of waiting, for logins and statements alike: a ticket in a
 *	  line kept in ticket order, a sleep on the process latch (and the
 *	  client's socket), and a wake-up by latch.
 *
 * A login waiting for a login place (auth.c, role_guard.login_waits) and a
 * statement waiting for an active place (active.c, role_guard.active_waits)
 * are the same thing: each takes a ticket, joins its user's line, and
 * sleeps until whoever frees a place sets its latch; it then looks again
 * under its user's lock.  The users decide who fits (a login by its
 * budgets, counting the earlier waiters of each count; a statement by the
 * grant walk of active.c); this file only keeps the line and the sleep, so
 * it calls none of them back and takes no lock of its own: each queue and
 * its links are protected by the lock of the user whose shared memory they
 * are in.
 *
 * The line is a doubly linked list of procnos through a link in each
 * process's own record (RGQueueLink, at a fixed stride from the first), so
 * joining, leaving and walking it allocate nothing.  A ticket kept from an
 * earlier wait (a login decided again after a reload) goes back to its
 * place: joining walks back from the tail past later tickets (O(1) for a
 * new ticket).
 *
 * The sleep waits on one set of events made once per process (the latch,
 * postmaster death, the client's socket), so a wait costs one epoll_wait,
 * not an epoll instance made and closed.  It is interruptible as any wait
 * in core is: CHECK_FOR_INTERRUPTS
 * after each wake-up (pg_cancel_backend, pg_terminate_backend,
 * statement_timeout, authentication_timeout), postmaster death
 * (WL_EXIT_ON_PM_DEATH), and a client that goes away (WL_SOCKET_CLOSED:
 * the caller decides what that means).  No polling: with no deadline the
 * sleep ends only by latch, signal or socket.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "queue.h"

/* Make an empty line over nprocs links, the first at first_link. */
void
rg_queue_init(RGQueue *q, void *first_link, Size stride, int nprocs)
{
	int			procno;

	q->links = (char *) first_link;
	q->stride = stride;
	q->next_ticket = 0;
	q->head = q->tail = -1;
	q->n = 0;
	for (procno = 0; procno < nprocs; procno++)
	{
		RGQueueLink *l = rg_queue_link(q, procno);

		l->ticket = 0;
		l->next = l->prev = -1;
	}
}

/* A new ticket: after every one given before.  Owner's lock held. */
uint64
rg_queue_ticket(RGQueue *q)
{
	return ++q->next_ticket;
}

/* Join the line at the ticket's place.  Owner's lock held. */
void
rg_queue_enter(RGQueue *q, int procno, uint64 ticket)
{
	RGQueueLink *l = rg_queue_link(q, procno);
	int			after = q->tail;

	Assert(ticket != 0 && l->ticket == 0);
	while (after >= 0 && rg_queue_link(q, after)->ticket > ticket)
		after = rg_queue_link(q, after)->prev;
	l->ticket = ticket;
	l->prev = after;
	l->next = after >= 0 ? rg_queue_link(q, after)->next : q->head;
	if (l->next >= 0)
		rg_queue_link(q, l->next)->prev = procno;
	else
		q->tail = procno;
	if (after >= 0)
		rg_queue_link(q, after)->next = procno;
	else
		q->head = procno;
	q->n++;
}

/* Leave the line (if in it).  Owner's lock held. */
void
rg_queue_leave(RGQueue *q, int procno)
{
	RGQueueLink *l = rg_queue_link(q, procno);

	if (l->ticket == 0)
		return;
	if (l->prev >= 0)
		rg_queue_link(q, l->prev)->next = l->next;
	else
		q->head = l->next;
	if (l->next >= 0)
		rg_queue_link(q, l->next)->prev = l->prev;
	else
		q->tail = l->prev;
	l->next = l->prev = -1;
	l->ticket = 0;
	q->n--;
}

/*
 * The events a sleep waits for, made once per process (a set made and
 * freed at every sleep costs an epoll instance and three registrations
 * each time): the latch, postmaster death, and, in a process with a
 * client, the client's socket closing.
 */
static WaitEventSet *rg_wait_set = NULL;
static bool rg_wait_set_socket = false;

static WaitEventSet *
rg_queue_wait_set(bool socket)
{
	if (rg_wait_set == NULL)
	{
		/*
		 * Kept only once whole: a failure half-way frees it (its epoll
		 * descriptor too) and the next wait makes it again.
		 */
		WaitEventSet *set = rg_create_wait_event_set(3);

		PG_TRY();
		{
			AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch,
							  NULL);
			AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
							  NULL, NULL);
			if (socket)
				AddWaitEventToSet(set, WL_SOCKET_CLOSED, MyProcPort->sock,
								  NULL, NULL);
		}
		PG_CATCH();
		{
			FreeWaitEventSet(set);
			PG_RE_THROW();
		}
		PG_END_TRY();
		rg_wait_set_socket = socket;
		rg_wait_set = set;
	}
	return rg_wait_set_socket == socket ? rg_wait_set : NULL;
}

/*
 * Sleep until the latch is set, the deadline passes (0: none), or the
 * client goes away (watch_client, when there is one).  No lock held.
 * Interrupts are processed before it returns.
 */
RGQueueWake
rg_queue_sleep(TimestampTz deadline, uint32 wait_event, bool watch_client)
{
	bool		socket = watch_client && MyProcPort != NULL &&
		whereToSendOutput == DestRemote;
	WaitEventSet *set = rg_queue_wait_set(socket);
	long		timeout = -1;
	int			rc = 0;

	if (deadline != 0)
		timeout = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													  deadline), 1);
	if (set != NULL)
	{
		WaitEvent	event;

		if (WaitEventSetWait(set, timeout, &event, 1, wait_event) == 0)
			rc = WL_TIMEOUT;
		else
			rc = event.events;
	}
	else
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
							   (deadline != 0 ? WL_TIMEOUT : 0) |
							   (socket ? WL_SOCKET_CLOSED : 0),
							   socket ? MyProcPort->sock : PGINVALID_SOCKET,
							   timeout, wait_event);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (rc & WL_SOCKET_CLOSED)
		return RG_QUEUE_CLIENT_GONE;
	if (rc & WL_TIMEOUT)
		return RG_QUEUE_TIMEOUT;
	return RG_QUEUE_WOKEN;
}

/* Wake a process in line: it looks again under its user's lock. */
void
rg_queue_wake(int procno)
{
	SetLatch(&GetPGProcByNumber(procno)->procLatch);
}
